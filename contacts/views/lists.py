"""Lists and custom fields: the structure of a workspace's audience."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import selectors
from contacts.forms import (
    FieldForm,
    ListForm,
)
from contacts.services import fields, lists

# --- Lists ------------------------------------------------------------------------------


@workspace_view()
@require_GET
def list_index(request: WorkspaceRequest) -> HttpResponse:
    return render(
        request,
        "contacts/list_index.html",
        {
            "lists": selectors.list_index(workspace=request.workspace),
            "can_edit": request.membership.has_role(Role.EDITOR),
        },
    )


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def list_create(request: WorkspaceRequest) -> HttpResponse:
    form = ListForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            contact_list = lists.list_create(
                workspace=request.workspace, acting_user=request.user, **form.cleaned_data
            )
        except ApplicationError as error:
            form.add_error("name", error.message)
        else:
            messages.success(request, f"List {contact_list.name} created.")
            return redirect("contacts:list_index", workspace_slug=request.workspace.slug)
    return render(request, "contacts/list_form.html", {"form": form, "contact_list": None})


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def list_edit(request: WorkspaceRequest, list_id: int) -> HttpResponse:
    contact_list = selectors.list_get(workspace=request.workspace, list_id=list_id)
    form = ListForm(request.POST or None, instance=contact_list)
    if request.method == "POST" and form.is_valid():
        contact_list.refresh_from_db()
        try:
            lists.list_update(
                contact_list=contact_list, acting_user=request.user, **form.cleaned_data
            )
        except ApplicationError as error:
            form.add_error("name", error.message)
        else:
            messages.success(request, "List saved.")
            return redirect("contacts:list_index", workspace_slug=request.workspace.slug)
    return render(request, "contacts/list_form.html", {"form": form, "contact_list": contact_list})


@workspace_view(Role.EDITOR)
@require_POST
def list_delete(request: WorkspaceRequest, list_id: int) -> HttpResponse:
    contact_list = selectors.list_get(workspace=request.workspace, list_id=list_id)
    lists.list_delete(contact_list=contact_list, acting_user=request.user)
    messages.success(request, f"List {contact_list.name} deleted.")
    return redirect("contacts:list_index", workspace_slug=request.workspace.slug)


# --- Fields -----------------------------------------------------------------------------


@workspace_view()
@require_GET
def field_list(request: WorkspaceRequest) -> HttpResponse:
    return render(
        request,
        "contacts/field_list.html",
        {
            "fields": selectors.field_list(workspace=request.workspace),
            "can_edit": request.membership.has_role(Role.EDITOR),
        },
    )


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def field_create(request: WorkspaceRequest) -> HttpResponse:
    form = FieldForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            field = fields.field_create(
                workspace=request.workspace,
                key=form.cleaned_data["key"],
                label=form.cleaned_data["label"],
                field_type=form.cleaned_data["type"],
                choices=form.choice_list(),
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"Field {field.label} created.")
            return redirect("contacts:field_list", workspace_slug=request.workspace.slug)
    return render(request, "contacts/field_form.html", {"form": form, "field": None})


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def field_edit(request: WorkspaceRequest, field_id: int) -> HttpResponse:
    field = selectors.field_get(workspace=request.workspace, field_id=field_id)
    initial = {
        "key": field.key,
        "label": field.label,
        "type": field.type,
        "choices": "\n".join(field.choices),
    }
    form = FieldForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            fields.field_update(
                field=field,
                label=form.cleaned_data["label"],
                field_type=form.cleaned_data["type"],
                choices=form.choice_list(),
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error("type", error.message)
        else:
            messages.success(request, f"Field {field.label} saved.")
            return redirect("contacts:field_list", workspace_slug=request.workspace.slug)
    return render(request, "contacts/field_form.html", {"form": form, "field": field})


@workspace_view(Role.EDITOR)
@require_POST
def field_delete(request: WorkspaceRequest, field_id: int) -> HttpResponse:
    field = selectors.field_get(workspace=request.workspace, field_id=field_id)
    cleared = fields.field_delete(field=field, acting_user=request.user)
    messages.success(request, f"Field {field.label} deleted; {cleared} contacts had a value.")
    return redirect("contacts:field_list", workspace_slug=request.workspace.slug)
