"""Segments: list, rule builder (new / edit), detail with count and preview, delete.

The builder is server-rendered: its add / remove buttons and its field and operator menus
post the whole form to `segment_builder`, which answers with the re-rendered rules; every
change of the rules posts to `segment_preview` (debounced), which answers with the live
count and the first matching contacts. Without htmx the same buttons post to the page.
"""

from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import forms_segments as builder
from contacts.models import Contact, Segment
from contacts.segments import selectors, services
from contacts.segments.compiler import (
    SegmentDefinitionError,
    definition_contacts,
    segment_contacts,
)
from contacts.segments.registry import segment_conditions

FORM_TEMPLATE = "contacts/segment_form.html"


@workspace_view()
@require_GET
def segment_list(request: WorkspaceRequest) -> HttpResponse:
    segments = selectors.segment_list(workspace=request.workspace)
    return render(
        request,
        "contacts/segment_list.html",
        {"segments": segments, "can_edit": request.membership.has_role(Role.EDITOR)},
    )


@workspace_view()
@require_GET
def segment_count(request: WorkspaceRequest, segment_id: int) -> HttpResponse:
    """A saved segment's count, loaded lazily by the list page (one query per segment)."""
    segment = selectors.segment_get(workspace=request.workspace, segment_id=segment_id)
    segment.workspace = request.workspace
    try:
        count = segment_contacts(segment=segment).count()
    except SegmentDefinitionError:
        count = None
    return render(request, "contacts/segment_list.html#segment-count", {"count": count})


@workspace_view()
@require_GET
def segment_detail(request: WorkspaceRequest, segment_id: int) -> HttpResponse:
    segment = selectors.segment_get(workspace=request.workspace, segment_id=segment_id)
    segment.workspace = request.workspace
    conditions = segment_conditions.for_workspace(request.workspace)
    tree = builder.tree_annotate(
        builder.tree_from_definition(segment.definition),
        workspace=request.workspace,
        conditions=conditions,
    )
    context = {
        "segment": segment,
        "tree": tree,
        "can_edit": request.membership.has_role(Role.EDITOR),
    }
    try:
        context |= _counted(segment_contacts(segment=segment))
    except SegmentDefinitionError as error:
        # A field or list used by the rules was deleted since the segment was saved.
        context["definition_error"] = error.message
    return render(request, "contacts/segment_detail.html", context)


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def segment_new(request: WorkspaceRequest) -> HttpResponse:
    return _builder_page(request, segment=None)


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def segment_edit(request: WorkspaceRequest, segment_id: int) -> HttpResponse:
    segment = selectors.segment_get(workspace=request.workspace, segment_id=segment_id)
    segment.workspace = request.workspace
    return _builder_page(request, segment=segment)


def _builder_page(request: WorkspaceRequest, *, segment: Segment | None) -> HttpResponse:
    workspace = request.workspace
    conditions = segment_conditions.for_workspace(workspace)
    form = builder.SegmentForm(request.POST or None, instance=segment)
    problems, paths = [], {}
    if request.method == "GET":
        tree = builder.tree_from_definition(segment.definition) if segment else None
        tree = tree if tree and tree.children else builder.empty_tree()
    else:
        tree = builder.tree_from_post(request.POST)
        action = request.POST.get("action", "save")
        if action != "save":
            builder.tree_apply(tree, action)
        elif form.is_valid():
            definition, paths = builder.tree_to_definition(tree, conditions=conditions)
            data = form.cleaned_data
            try:
                if segment is None:
                    segment = services.segment_create(
                        workspace=workspace,
                        name=data["name"],
                        description=data["description"],
                        definition=definition,
                        acting_user=request.user,
                    )
                    messages.success(request, f"Segment {segment.name} saved.")
                else:
                    services.segment_update(
                        segment=segment,
                        name=data["name"],
                        description=data["description"],
                        definition=definition,
                        acting_user=request.user,
                    )
                    messages.success(request, f"Segment {segment.name} updated.")
            except SegmentDefinitionError as error:
                problems = error.problems
                form.add_error(None, "Some conditions need attention (highlighted below).")
            except ApplicationError as error:
                form.add_error("name", error.message)
            else:
                return redirect(
                    "contacts:segment_detail", workspace_slug=workspace.slug, segment_id=segment.pk
                )
    builder.tree_annotate(
        tree, workspace=workspace, conditions=conditions, problems=problems, paths=paths
    )
    context = {
        "form": form,
        "segment": segment,
        "tree": tree,
        "field_menu": builder.field_menu(conditions),
    }
    status = 400 if request.method == "POST" and (problems or form.errors) else 200
    return render(request, FORM_TEMPLATE, context, status=status)


@workspace_view(Role.EDITOR)
@require_POST
def segment_builder(request: WorkspaceRequest) -> HttpResponse:
    """The rules re-rendered after a builder button or a field / operator change."""
    conditions = segment_conditions.for_workspace(request.workspace)
    tree = builder.tree_from_post(request.POST)
    action = request.POST.get("action", "")
    if action:
        builder.tree_apply(tree, action)
    builder.tree_annotate(tree, workspace=request.workspace, conditions=conditions)
    return render(
        request,
        f"{FORM_TEMPLATE}#segment-rules",
        {"tree": tree, "field_menu": builder.field_menu(conditions)},
    )


@workspace_view(Role.EDITOR)
@require_POST
def segment_preview(request: WorkspaceRequest) -> HttpResponse:
    """The live count and first matching contacts of the rules being edited."""
    conditions = segment_conditions.for_workspace(request.workspace)
    tree = builder.tree_from_post(request.POST)
    # As the builder shows it: a rule whose field was just chosen takes its first operator.
    builder.tree_annotate(tree, workspace=request.workspace, conditions=conditions)
    definition, _ = builder.tree_to_definition(tree, conditions=conditions)
    context = {}
    try:
        context |= _counted(definition_contacts(workspace=request.workspace, definition=definition))
    except SegmentDefinitionError as error:
        context["problems"] = [problem.message for problem in error.problems]
    return render(request, f"{FORM_TEMPLATE}#segment-preview", context)


def _counted(contacts: QuerySet[Contact]) -> dict:
    count = contacts.count()
    return {
        "count": count,
        "count_label": f"{count:,}",
        "preview": selectors.segment_preview(contacts=contacts),
    }


@workspace_view(Role.EDITOR)
@require_POST
def segment_delete(request: WorkspaceRequest, segment_id: int) -> HttpResponse:
    segment = selectors.segment_get(workspace=request.workspace, segment_id=segment_id)
    segment.workspace = request.workspace
    services.segment_delete(segment=segment, acting_user=request.user)
    messages.success(request, f"Segment {segment.name} deleted.")
    url = reverse("contacts:segment_list", kwargs={"workspace_slug": request.workspace.slug})
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
