"""The template library: the workspace's layouts, the built-in starters, the layout editor."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import library, services
from campaigns.forms import TemplateForm, TemplateStarterForm
from campaigns.models import Template
from campaigns.starters import STARTERS, starter_get
from campaigns.views.editor import preview_csp

# A new layout starts from the plainest starter: a whole document with its slot and footer.
_NEW_TEMPLATE_STARTER = "plain"


def _to_editor(request: WorkspaceRequest, template: Template) -> HttpResponse:
    return redirect(
        "campaigns:template_edit", workspace_slug=request.workspace.slug, template_id=template.pk
    )


def _preview_context(request: WorkspaceRequest, html: str) -> dict:
    result = library.template_preview(workspace=request.workspace, html=html)
    inbox = None
    if result.rendered is not None:
        inbox = {
            "from_name": request.workspace.name,
            "subject": result.rendered.subject,
            "preheader": library.SAMPLE_PREHEADER,
        }
    warnings = (
        [] if result.errors else library.template_warnings(workspace=request.workspace, html=html)
    )
    return {
        "preview": result,
        "inbox": inbox,
        "warnings": warnings,
        "preview_id": "template-preview",
    }


def _preview_response(request: WorkspaceRequest, html: str) -> HttpResponse:
    """The preview frame alone: what the editor's live preview swaps in as one types."""
    response = render(
        request, "campaigns/_email_preview.html#frame", _preview_context(request, html)
    )
    return preview_csp(response)


def _warn(request: WorkspaceRequest, html: str) -> None:
    for warning in library.template_warnings(workspace=request.workspace, html=html):
        messages.warning(request, warning)


@workspace_view()
@require_GET
def template_list(request: WorkspaceRequest) -> HttpResponse:
    return render(
        request,
        "campaigns/template_list.html",
        {
            "templates": library.template_library(workspace=request.workspace),
            "starters": STARTERS,
            "can_edit": request.membership.has_role(Role.EDITOR),
        },
    )


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def template_create(request: WorkspaceRequest) -> HttpResponse:
    """A new layout (POST name and html), or the workspace's copy of a starter (POST starter)."""
    if request.method == "POST" and "starter" in request.POST:
        return _template_from_starter(request)
    if request.method == "POST" and request.htmx:
        return _preview_response(request, request.POST.get("html", ""))
    initial = {"html": starter_get(_NEW_TEMPLATE_STARTER).html}
    form = TemplateForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                template = library.template_create(
                    workspace=request.workspace, acting_user=request.user, **form.cleaned_data
                )
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                messages.success(request, f"Template “{template.name}” created.")
                _warn(request, template.html)
                return _to_editor(request, template)
        status = 400
    html = form["html"].value() or ""
    response = render(
        request,
        "campaigns/template_edit.html",
        {"template": None, "form": form, "can_edit": True, **_preview_context(request, html)},
        status=status,
    )
    return preview_csp(response)


def _template_from_starter(request: WorkspaceRequest) -> HttpResponse:
    form = TemplateStarterForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the built-in layouts.")
        return redirect("campaigns:template_list", workspace_slug=request.workspace.slug)
    template = services.template_from_starter(
        workspace=request.workspace,
        starter=starter_get(form.cleaned_data["starter"]),
        acting_user=request.user,
    )
    return _to_editor(request, template)


@workspace_view()
@require_http_methods(["GET", "POST"])
def template_edit(request: WorkspaceRequest, template_id: int) -> HttpResponse:
    """The layout editor; an htmx POST previews the unsaved HTML, a plain POST saves it."""
    template = library.template_get(workspace=request.workspace, template_id=template_id)
    if request.method == "POST" and request.htmx:
        return _preview_response(request, request.POST.get("html", ""))
    can_edit = request.membership.has_role(Role.EDITOR)
    form = TemplateForm(
        request.POST or None, initial={"name": template.name, "html": template.html}
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                library.template_update(
                    template=template, acting_user=request.user, **form.cleaned_data
                )
            except ApplicationError as error:
                form.add_error(None, error.message)
            else:
                messages.success(request, "Template saved.")
                _warn(request, form.cleaned_data["html"])
                return _to_editor(request, template)
        status = 400
    if not can_edit:
        for field in form.fields.values():
            field.disabled = True
    html = form["html"].value() or ""
    response = render(
        request,
        "campaigns/template_edit.html",
        {
            "template": template,
            "form": form,
            "can_edit": can_edit,
            "versions": library.template_versions(template=template),
            **_preview_context(request, html),
        },
        status=status,
    )
    return preview_csp(response)


@workspace_view(Role.EDITOR)
@require_POST
def template_duplicate(request: WorkspaceRequest, template_id: int) -> HttpResponse:
    template = library.template_get(workspace=request.workspace, template_id=template_id)
    copy = library.template_duplicate(template=template, acting_user=request.user)
    messages.success(request, f"Duplicated as “{copy.name}”.")
    return _to_editor(request, copy)


@workspace_view(Role.EDITOR)
@require_POST
def template_version_restore(
    request: WorkspaceRequest, template_id: int, number: int
) -> HttpResponse:
    template = library.template_get(workspace=request.workspace, template_id=template_id)
    library.template_version_get(template=template, number=number)  # a forged number is a 404
    try:
        template = library.template_version_restore(
            template=template, number=number, acting_user=request.user
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Version {number} restored as the current HTML.")
        _warn(request, template.html)
    return _to_editor(request, template)
