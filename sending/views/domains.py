"""Sending domains: list, add, records to publish, verify on demand, rotate keys."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from sending import policy, selectors
from sending.forms import DomainAddForm
from sending.models import DomainCheck
from sending.services import domains as domain_services


def _overview_context(request: WorkspaceRequest, form: DomainAddForm | None = None) -> dict:
    workspace = request.workspace
    return {
        "domains": selectors.sending_domain_list(workspace=workspace),
        "listings": selectors.dnsbl_listing_list_open_for_workspace(workspace=workspace),
        "reputation": policy.workspace_reputation(workspace=workspace),
        "quota": policy.workspace_quota_usage(workspace_id=workspace.pk),
        "stop_reason": policy.sending_stop_reason(workspace_id=workspace.pk),
        "form": form or DomainAddForm(),
        "can_manage": request.membership.has_role(Role.ADMIN),
    }


@workspace_view()
@require_GET
def overview(request: WorkspaceRequest) -> HttpResponse:
    return render(request, "sending/overview.html", _overview_context(request))


@workspace_view()
@require_GET
def dashboard_panel(request: WorkspaceRequest) -> HttpResponse:
    summary = selectors.sending_summary(workspace=request.workspace)
    return render(request, "sending/_dashboard_panel.html", summary)


@workspace_view(Role.ADMIN)
@require_POST
def domain_add(request: WorkspaceRequest) -> HttpResponse:
    form = DomainAddForm(request.POST)
    if form.is_valid():
        try:
            domain = domain_services.sending_domain_add(
                workspace=request.workspace,
                domain=form.cleaned_data["domain"],
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error("domain", error.message)
        else:
            messages.success(request, f"{domain.display_name} added. Publish its records below.")
            url = reverse(
                "sending:domain_detail",
                kwargs={"workspace_slug": request.workspace.slug, "domain_id": domain.pk},
            )
            if request.htmx:
                response = HttpResponse(status=204)
                response["HX-Redirect"] = url
                return response
            return redirect(url)
    if request.htmx:
        return render(request, "sending/overview.html#domain-add", _overview_context(request, form))
    return render(request, "sending/overview.html", _overview_context(request, form), status=400)


def _detail_context(request: WorkspaceRequest, domain) -> dict:
    return {
        "domain": domain,
        "records": selectors.sending_domain_records(domain=domain),
        "keys": domain.dkim_keys.exclude(status="retired").order_by("-created_at"),
        "checks": selectors.domain_check_list(domain=domain),
        "can_manage": request.membership.has_role(Role.ADMIN),
        "can_verify": request.membership.has_role(Role.EDITOR),
    }


@workspace_view()
@require_GET
def domain_detail(request: WorkspaceRequest, domain_id: int) -> HttpResponse:
    domain = selectors.sending_domain_get(workspace=request.workspace, domain_id=domain_id)
    return render(request, "sending/domain_detail.html", _detail_context(request, domain))


def _records_response(request: WorkspaceRequest, domain) -> HttpResponse:
    if request.htmx:
        domain.refresh_from_db()
        return render(
            request, "sending/domain_detail.html#records-panel", _detail_context(request, domain)
        )
    return redirect(
        "sending:domain_detail", workspace_slug=request.workspace.slug, domain_id=domain.pk
    )


@workspace_view(Role.VIEWER, write_role=Role.EDITOR)
@require_POST
def domain_verify(request: WorkspaceRequest, domain_id: int) -> HttpResponse:
    domain = selectors.sending_domain_get(workspace=request.workspace, domain_id=domain_id)
    check = domain_services.sending_domain_check(domain=domain, trigger=DomainCheck.Trigger.MANUAL)
    if check.status_after == "verified":
        messages.success(request, f"{domain.display_name} is verified.")
    elif domain_services.sending_domain_has_unknown(check=check):
        messages.warning(request, "Some records could not be looked up; try again shortly.")
    else:
        messages.warning(request, "Some records are not right yet; see each record below.")
    return _records_response(request, domain)


@workspace_view(Role.ADMIN)
@require_POST
def domain_rotate_key(request: WorkspaceRequest, domain_id: int) -> HttpResponse:
    domain = selectors.sending_domain_get(workspace=request.workspace, domain_id=domain_id)
    try:
        key = domain_services.dkim_key_rotate(domain=domain, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request,
            f"New key {key.selector} created. Publish its record; it signs once it verifies.",
        )
    return _records_response(request, domain)


@workspace_view(Role.ADMIN)
@require_POST
def domain_add_ed25519(request: WorkspaceRequest, domain_id: int) -> HttpResponse:
    domain = selectors.sending_domain_get(workspace=request.workspace, domain_id=domain_id)
    try:
        key = domain_services.dkim_key_add_ed25519(domain=domain, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Ed25519 key {key.selector} created. Publish its record.")
    return _records_response(request, domain)


@workspace_view(Role.ADMIN)
@require_POST
def domain_remove(request: WorkspaceRequest, domain_id: int) -> HttpResponse:
    domain = selectors.sending_domain_get(workspace=request.workspace, domain_id=domain_id)
    name = domain.display_name
    domain_services.sending_domain_remove(domain=domain, acting_user=request.user)
    messages.success(request, f"{name} was removed.")
    url = reverse("sending:overview", kwargs={"workspace_slug": request.workspace.slug})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)
