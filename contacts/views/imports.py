"""CSV imports: upload, map columns, watch the progress, download the rejected rows."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts.forms_imports import ImportMappingForm, ImportUploadForm
from contacts.models import ContactImport
from contacts.services import imports as import_services

# Room for the multipart envelope around the file itself.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _import_get(request: WorkspaceRequest, import_id: int) -> ContactImport:
    contact_import = (
        ContactImport.objects.for_workspace(request.workspace)
        .select_related("created_by")
        .filter(pk=import_id)
        .first()
    )
    if contact_import is None:
        raise Http404("No such import.")
    return contact_import


@workspace_view()
@require_GET
def import_list(request: WorkspaceRequest) -> HttpResponse:
    imports = ContactImport.objects.for_workspace(request.workspace).select_related("created_by")
    return render(request, "contacts/import_list.html", {"imports": imports[:50], "tab": "imports"})


@csrf_exempt  # checked below, once the size is known to be acceptable
@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def import_upload(request: WorkspaceRequest) -> HttpResponse:
    """An upload over the limit is refused from its Content-Length, before it is read."""
    if request.method == "POST":
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.CONTACT_IMPORT_MAX_BYTES + _MULTIPART_OVERHEAD_BYTES:
            return render(
                request,
                "contacts/import_upload.html",
                {
                    "form": ImportUploadForm(),
                    "refusal": import_services.too_large_message(),
                    "max_mb": settings.CONTACT_IMPORT_MAX_BYTES // 2**20,
                },
                status=413,
            )
    return _import_upload(request)


@csrf_protect
def _import_upload(request: WorkspaceRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            contact_import = import_services.contact_import_upload(
                workspace=request.workspace,
                upload=form.cleaned_data["file"],
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error("file", error.message)
        else:
            return redirect(
                "contacts:import_detail",
                workspace_slug=request.workspace.slug,
                import_id=contact_import.pk,
            )
    return render(
        request,
        "contacts/import_upload.html",
        {"form": form, "tab": "imports", "max_mb": settings.CONTACT_IMPORT_MAX_BYTES // 2**20},
        status=400 if form.errors else 200,
    )


@workspace_view()
@require_http_methods(["GET", "POST"])
def import_detail(request: WorkspaceRequest, import_id: int) -> HttpResponse:
    """The mapping screen while the import waits for it; its progress and summary after."""
    contact_import = _import_get(request, import_id)
    if contact_import.status != ContactImport.Status.MAPPING:
        return render(
            request, "contacts/import_detail.html", {"import": contact_import, "tab": "imports"}
        )
    form = ImportMappingForm(
        request.POST or None, contact_import=contact_import, workspace=request.workspace
    )
    if request.method == "POST" and form.is_valid():
        try:
            import_services.contact_import_start(
                contact_import=contact_import, acting_user=request.user, **form.start_arguments()
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
        else:
            return redirect(
                "contacts:import_detail",
                workspace_slug=request.workspace.slug,
                import_id=contact_import.pk,
            )
    return render(
        request,
        "contacts/import_mapping.html",
        {"import": contact_import, "form": form, "tab": "imports"},
        status=400 if form.errors else 200,
    )


@workspace_view(Role.EDITOR)
@require_POST
def import_resume(request: WorkspaceRequest, import_id: int) -> HttpResponse:
    contact_import = _import_get(request, import_id)
    try:
        import_services.contact_import_resume(
            contact_import=contact_import, acting_user=request.user
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect(
        "contacts:import_detail", workspace_slug=request.workspace.slug, import_id=import_id
    )


@workspace_view()
@require_GET
def import_progress(request: WorkspaceRequest, import_id: int) -> HttpResponse:
    """The progress panel, polled by htmx until the import ends."""
    contact_import = _import_get(request, import_id)
    return render(
        request, "contacts/import_detail.html#import-progress", {"import": contact_import}
    )


@workspace_view()
@require_GET
def import_report(request: WorkspaceRequest, import_id: int) -> StreamingHttpResponse:
    contact_import = _import_get(request, import_id)
    response = StreamingHttpResponse(
        import_services.contact_import_report_csv(contact_import=contact_import),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="import-{contact_import.pk}-rejected-rows.csv"'
    )
    return response
