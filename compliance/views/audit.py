"""The workspace's audit log page: owners and admins only."""

from django.http import HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from compliance import audit_log


@workspace_view(Role.ADMIN)
@require_GET
def audit_log_page(request: WorkspaceRequest) -> HttpResponse:
    filters = audit_log.AuditFilters.from_query(request.GET)
    page = audit_log.audit_entry_page(
        workspace=request.workspace, filters=filters, after=request.GET.get("after", "")
    )
    filter_fields = {
        "category": filters.category,
        "actor": filters.actor,
        "from": filters.date_from.isoformat() if filters.date_from else "",
        "to": filters.date_to.isoformat() if filters.date_to else "",
    }
    context = {
        "page": page,
        "filters": filter_fields,
        "filter_query": urlencode({key: value for key, value in filter_fields.items() if value}),
        "categories": [(key, label) for key, (label, _) in audit_log.CATEGORIES.items()],
        "actors": audit_log.audit_actor_choices(workspace=request.workspace),
    }
    template = "compliance/audit_log.html"
    if request.htmx and not request.htmx.boosted:
        template += "#audit-table"
    return render(request, template, context)
