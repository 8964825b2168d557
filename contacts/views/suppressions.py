"""Suppressions: addresses this workspace never mails."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import selectors
from contacts.forms import (
    SuppressionAddForm,
)
from contacts.services import suppressions

# --- Suppressions -----------------------------------------------------------------------


def _suppressions_context(request: WorkspaceRequest, form: SuppressionAddForm | None = None):
    q = request.GET.get("q", "").strip()[:200]
    found = selectors.suppression_list(workspace=request.workspace, q=q)
    before = request.GET.get("before", "")
    if before.isdigit():
        found = found.filter(id__lt=int(before))
    rows = list(found.order_by("-id")[: selectors.PAGE_SIZE + 1])
    more = len(rows) > selectors.PAGE_SIZE
    rows = rows[: selectors.PAGE_SIZE]
    return {
        "suppressions": rows,
        "next_before": rows[-1].pk if more else None,
        "q": q,
        "add_form": form or SuppressionAddForm(),
        "can_edit": request.membership.has_role(Role.EDITOR),
        "removable": suppressions.REMOVABLE_REASONS,
    }


@workspace_view()
@require_GET
def suppression_list(request: WorkspaceRequest) -> HttpResponse:
    context = _suppressions_context(request)
    if request.htmx and not request.htmx.boosted:
        return render(request, "contacts/suppression_list.html#suppressions-table", context)
    return render(request, "contacts/suppression_list.html", context)


@workspace_view(Role.EDITOR)
@require_POST
def suppression_add(request: WorkspaceRequest) -> HttpResponse:
    form = SuppressionAddForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(
            request,
            "contacts/suppression_list.html",
            _suppressions_context(request, form=form),
            status=400,
        )
    added, invalid = suppressions.suppression_add_many(
        workspace=request.workspace,
        addresses=form.address_list(),
        source=f"Added by {request.user.email}",
        acting_user=request.user,
    )
    messages.success(request, f"{added} addresses suppressed.")
    if invalid:
        shown = ", ".join(invalid[:5]) + (" …" if len(invalid) > 5 else "")
        messages.warning(request, f"{len(invalid)} entries are not addresses: {shown}")
    return redirect("contacts:suppression_list", workspace_slug=request.workspace.slug)


@workspace_view(Role.EDITOR)
@require_POST
def suppression_remove(request: WorkspaceRequest, suppression_id: int) -> HttpResponse:
    suppression = selectors.suppression_get(
        workspace=request.workspace, suppression_id=suppression_id
    )
    try:
        suppressions.suppression_remove(suppression=suppression, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{suppression.email or 'The address'} may receive mail again.")
    return redirect("contacts:suppression_list", workspace_slug=request.workspace.slug)
