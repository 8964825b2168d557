"""GDPR requests: the workspace page of owners and admins, and the person's own page
reached from the preference center (a signed token, no session)."""

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.downloads import workspace_file_response
from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from compliance import gdpr_requests
from compliance.forms_gdpr import GdprRequestForm
from compliance.models import GdprRequest

# --- The workspace's page ----------------------------------------------------------------


def _requests_context(request: WorkspaceRequest, form: GdprRequestForm | None = None) -> dict:
    found = list(gdpr_requests.gdpr_request_list(workspace=request.workspace)[:50])
    return {
        "form": form or GdprRequestForm(),
        "requests": found,
        "is_busy": any(
            each.status in (GdprRequest.Status.QUEUED, GdprRequest.Status.RUNNING) for each in found
        ),
    }


@workspace_view(Role.ADMIN)
@require_GET
def gdpr_requests_page(request: WorkspaceRequest) -> HttpResponse:
    context = _requests_context(request)
    if request.htmx and not request.htmx.boosted:
        return render(request, "compliance/gdpr_requests.html#gdpr-requests-table", context)
    return render(request, "compliance/gdpr_requests.html", context)


@workspace_view(Role.ADMIN, write_role=Role.ADMIN)
@require_POST
def gdpr_request_create(request: WorkspaceRequest) -> HttpResponse:
    form = GdprRequestForm(request.POST)
    if form.is_valid():
        try:
            gdpr_requests.gdpr_request_create(
                workspace=request.workspace,
                kind=form.cleaned_data["kind"],
                email=form.cleaned_data["email"],
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error("email", error.message)
        else:
            messages.success(request, "Request queued. It appears below when it has run.")
            return redirect("compliance_ws:gdpr_requests", workspace_slug=request.workspace.slug)
    return render(
        request, "compliance/gdpr_requests.html", _requests_context(request, form), status=400
    )


@workspace_view(Role.ADMIN)
@require_GET
def gdpr_download(request: WorkspaceRequest, request_id: int) -> FileResponse:
    found = gdpr_requests.gdpr_request_get(workspace=request.workspace, request_id=request_id)
    if found.kind != GdprRequest.Kind.EXPORT or found.status != GdprRequest.Status.DONE:
        raise Http404("This export is not ready.")
    if not found.file_name:
        raise Http404("This export's file is gone.")
    response = workspace_file_response(
        workspace=request.workspace,
        name=found.file_name,
        download_name=f"personal-data-{found.pk}.zip",
    )
    gdpr_requests.gdpr_export_downloaded(request=found, acting_user=request.user)
    return response


# --- The person's page -------------------------------------------------------------------


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "compliance/link_invalid.html", status=404)


def _token_contact(token: str):
    """The contact a preference token names; None for any token that does not verify."""
    from compliance import selectors
    from compliance.tokens import Purpose, token_read

    claim = token_read(token, purpose=Purpose.PREFERENCES)
    if claim is None:
        return None
    return selectors.token_contact_get(claim=claim)


@require_http_methods(["GET", "POST"])
def gdpr_request(request: HttpRequest, token: str) -> HttpResponse:
    """The person asks for their data or its erasure; either way a link goes to the address,
    so holding a forwarded preference link is not enough to act."""
    contact = _token_contact(token)
    if contact is None:
        return _invalid_link(request)
    sent = ""
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        if kind in GdprRequest.Kind.values:
            gdpr_requests.gdpr_request_by_person(
                workspace=contact.workspace, email=contact.email, kind=kind
            )
            sent = kind
    return render(
        request,
        "compliance/gdpr_public.html",
        {"contact": contact, "brand_workspace": contact.workspace, "sent": sent, "token": token},
    )


@require_http_methods(["GET", "POST"])
def gdpr_erasure_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks (mail scanners prefetch links); POST, the person's button, confirms."""
    request_id = gdpr_requests.erasure_confirm_token_read(token)
    if request_id is None:
        return _invalid_link(request)
    if request.method == "POST":
        confirmed = gdpr_requests.gdpr_erasure_confirm(request_id=request_id)
        if confirmed is None:
            return _invalid_link(request)
        return render(
            request,
            "compliance/gdpr_erasure_confirm.html",
            {"done": True, "brand_workspace": confirmed.workspace},
        )
    found = gdpr_requests.gdpr_request_by_id(request_id=request_id)
    if found is None:
        return _invalid_link(request)
    return render(
        request,
        "compliance/gdpr_erasure_confirm.html",
        {
            "done": found.status != GdprRequest.Status.AWAITING_CONFIRMATION,
            "brand_workspace": found.workspace,
        },
    )
