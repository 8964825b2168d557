"""CSV exports, written by a worker and downloaded through workspace-checked views."""

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.downloads import workspace_file_response
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import selectors
from contacts.models import ContactExport
from contacts.services import exports

# --- Exports ----------------------------------------------------------------------------


def _exports_context(request: WorkspaceRequest) -> dict:
    found = list(selectors.export_list(workspace=request.workspace)[:50])
    return {
        "exports": found,
        "is_busy": any(
            export.status in (ContactExport.Status.QUEUED, ContactExport.Status.RUNNING)
            for export in found
        ),
        "lists": selectors.list_choices(workspace=request.workspace),
        "segments": selectors.segment_list(workspace=request.workspace),
        "can_edit": request.membership.has_role(Role.EDITOR),
    }


@workspace_view()
@require_GET
def export_list(request: WorkspaceRequest) -> HttpResponse:
    context = _exports_context(request)
    if request.htmx and not request.htmx.boosted:
        return render(request, "contacts/export_list.html#exports-table", context)
    return render(request, "contacts/export_list.html", context)


@workspace_view(Role.EDITOR)
@require_POST
def export_create(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    source = request.POST.get("source", "")
    kind, _, ident = source.partition(":")
    if kind == "list" and ident.isdigit():
        contact_list = selectors.list_get(workspace=workspace, list_id=int(ident))
        spec, description = {"list": contact_list.pk}, f"Subscribers of {contact_list.name}"
    elif kind == "segment" and ident.isdigit():
        segment = selectors.segment_get(workspace=workspace, segment_id=int(ident))
        spec, description = {"segment": segment.pk}, f"Segment {segment.name}"
    elif kind == "all":
        spec, description = {"filters": {}}, "All contacts"
    else:
        messages.error(request, "Choose what to export.")
        return redirect("contacts:export_list", workspace_slug=workspace.slug)
    exports.contact_export_request(
        workspace=workspace, spec=spec, description=description, acting_user=request.user
    )
    messages.success(request, "Export started. It appears below when it is ready.")
    return redirect("contacts:export_list", workspace_slug=workspace.slug)


@workspace_view()
@require_GET
def export_download(request: WorkspaceRequest, export_id: int) -> FileResponse:
    export = selectors.export_get(workspace=request.workspace, export_id=export_id)
    if export.status != ContactExport.Status.DONE or not export.file_name:
        raise Http404("This export is not ready.")
    return workspace_file_response(
        workspace=request.workspace,
        name=export.file_name,
        download_name=f"contacts-export-{export.pk}-{export.created_at:%Y%m%d}.csv",
    )
