"""The contacts table (search, filters, keyset pages, bulk actions) and one contact's page."""

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import selectors
from contacts.forms import (
    BulkActionForm,
    ContactFilterForm,
    ContactForm,
)
from contacts.services import bulk, contacts, exports, subscriptions

# --- Contacts table ---------------------------------------------------------------------


def _table_context(request: WorkspaceRequest, data: QueryDict) -> dict:
    workspace = request.workspace
    contact_lists = list(selectors.list_choices(workspace=workspace))
    filters = selectors.ContactFilters.from_dict(data)
    page = selectors.contact_page(
        workspace=workspace, filters=filters, cursor=str(data.get("after") or "")
    )
    query = QueryDict(mutable=True)
    query.update(filters.as_dict())
    return {
        "filters": filters,
        "filter_form": ContactFilterForm(data or None, lists=contact_lists),
        "filter_query": query.urlencode(),
        "filter_fields": filters.as_dict(),
        "page": page,
        "contact_lists": contact_lists,
        "can_edit": request.membership.has_role(Role.EDITOR),
        "has_contacts": bool(page.contacts) or filters.is_filtered or not page.is_first,
    }


@workspace_view()
@require_GET
def contact_list(request: WorkspaceRequest) -> HttpResponse:
    context = _table_context(request, request.GET)
    if not context["has_contacts"]:
        context["has_contacts"] = selectors.contact_exists(workspace=request.workspace)
    if request.htmx and not request.htmx.boosted:
        return render(request, "contacts/contact_list.html#contacts-table", context)
    return render(request, "contacts/contact_list.html", context)


def _bulk_queryset(request: WorkspaceRequest, form: BulkActionForm):
    """The contacts a bulk action works on: the ticked ones, or every one the filter matches."""
    workspace = request.workspace
    filters = selectors.ContactFilters.from_dict(request.POST)
    matching = selectors.contact_filter(workspace=workspace, filters=filters)
    if form.cleaned_data.get("scope") == "all":
        return matching, filters
    return matching.filter(pk__in=form.cleaned_data["ids"]), filters


@workspace_view(Role.EDITOR)
@require_POST
def contact_bulk(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    contact_lists = list(selectors.list_choices(workspace=workspace))
    form = BulkActionForm(request.POST, lists=contact_lists)
    back = reverse("contacts:contact_list", kwargs={"workspace_slug": workspace.slug})
    filters = selectors.ContactFilters.from_dict(request.POST)
    query = QueryDict(mutable=True)
    query.update(filters.as_dict())
    if query:
        back = f"{back}?{query.urlencode()}"
    if not form.is_valid():
        for error in form.non_field_errors() or ["Choose an action."]:
            messages.error(request, error)
        return redirect(back)
    queryset, filters = _bulk_queryset(request, form)
    action = form.cleaned_data["action"]
    contact_list = None
    if form.cleaned_data.get("target_list"):
        contact_list = selectors.list_get(
            workspace=workspace, list_id=int(form.cleaned_data["target_list"])
        )
    if action == "add_to_list":
        count = bulk.contacts_add_to_list(
            workspace=workspace,
            contacts=queryset,
            contact_list=contact_list,
            acting_user=request.user,
        )
        messages.success(request, f"{count} contacts subscribed to {contact_list.name}.")
    elif action == "remove_from_list":
        count = bulk.contacts_remove_from_list(
            workspace=workspace,
            contacts=queryset,
            contact_list=contact_list,
            acting_user=request.user,
        )
        messages.success(request, f"{count} contacts removed from {contact_list.name}.")
    elif action == "unsubscribe":
        count = bulk.contacts_unsubscribe_from_list(
            workspace=workspace,
            contacts=queryset,
            contact_list=contact_list,
            acting_user=request.user,
        )
        messages.success(request, f"{count} contacts unsubscribed from {contact_list.name}.")
    elif action == "delete":
        count = contacts.contacts_delete(
            workspace=workspace, contacts=queryset, acting_user=request.user
        )
        messages.success(request, f"{count} contacts deleted.")
    else:
        spec = {"filters": filters.as_dict()}
        if form.cleaned_data.get("scope") != "all":
            spec["filters"] = {}
            spec["ids"] = sorted(form.cleaned_data["ids"])
        exports.contact_export_request(
            workspace=workspace,
            spec=spec,
            description=_filter_description(filters, selected=spec.get("ids")),
            acting_user=request.user,
        )
        messages.success(request, "Export started. It appears below when it is ready.")
        return redirect("contacts:export_list", workspace_slug=workspace.slug)
    return redirect(back)


def _filter_description(filters: selectors.ContactFilters, selected=None) -> str:
    if selected:
        return f"{len(selected)} selected contacts"
    parts = []
    if filters.q:
        parts.append(f"matching “{filters.q}”")
    if filters.status:
        parts.append(f"status {filters.status}")
    if filters.list_id:
        parts.append(f"in list #{filters.list_id}")
    if filters.created_from or filters.created_to:
        parts.append(f"created {filters.created_from or '…'} to {filters.created_to or '…'}")
    return "Contacts " + ", ".join(parts) if parts else "All contacts"


# --- One contact ------------------------------------------------------------------------


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def contact_create(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    custom_fields = list(selectors.field_list(workspace=workspace))
    contact_lists = list(selectors.list_choices(workspace=workspace))
    form = ContactForm(request.POST or None, fields=custom_fields, lists=contact_lists)
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                attributes = contacts.attributes_clean(
                    workspace=workspace, values=form.attribute_texts()
                )
                contact = contacts.contact_create(
                    workspace=workspace,
                    email=form.cleaned_data["email"],
                    first_name=form.cleaned_data["first_name"],
                    last_name=form.cleaned_data["last_name"],
                    attributes=attributes,
                    acting_user=request.user,
                )
                chosen = set(form.cleaned_data.get("lists") or [])
                for contact_list in contact_lists:
                    if str(contact_list.pk) in chosen:
                        subscriptions.subscription_subscribe(
                            contact=contact,
                            contact_list=contact_list,
                            method="admin",
                            source=f"Added by {request.user.email}",
                            actor=request.user,
                        )
        except ApplicationError as error:
            form.add_error(None, error.message)
            for problem in error.extra.get("problems", []):
                form.add_error(None, problem)
        else:
            messages.success(request, f"{contact.email} added.")
            return redirect(
                "contacts:contact_detail", workspace_slug=workspace.slug, contact_id=contact.pk
            )
    return render(request, "contacts/contact_form.html", {"form": form, "contact": None})


def _detail_context(request: WorkspaceRequest, contact) -> dict:
    workspace = request.workspace
    consent_records = list(selectors.contact_consent_records(contact=contact))
    contact_subscriptions = list(selectors.contact_subscriptions(contact=contact))
    subscribed_ids = {s.contact_list_id for s in contact_subscriptions}
    custom_fields = list(selectors.field_list(workspace=workspace))
    return {
        "contact": contact,
        "subscriptions": contact_subscriptions,
        "other_lists": [
            cl for cl in selectors.list_choices(workspace=workspace) if cl.pk not in subscribed_ids
        ],
        "consent_records": consent_records,
        "timeline": selectors.contact_timeline(contact=contact, consent_records=consent_records),
        "attributes": [
            (field, contact.attributes.get(field.key))
            for field in custom_fields
            if contact.attributes.get(field.key) is not None
        ],
        "can_edit": request.membership.has_role(Role.EDITOR),
    }


@workspace_view()
@require_GET
def contact_detail(request: WorkspaceRequest, contact_id: int) -> HttpResponse:
    contact = selectors.contact_get(workspace=request.workspace, contact_id=contact_id)
    return render(request, "contacts/contact_detail.html", _detail_context(request, contact))


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def contact_edit(request: WorkspaceRequest, contact_id: int) -> HttpResponse:
    workspace = request.workspace
    contact = selectors.contact_get(workspace=workspace, contact_id=contact_id)
    custom_fields = list(selectors.field_list(workspace=workspace))
    form = ContactForm(request.POST or None, fields=custom_fields, contact=contact)
    if request.method == "POST" and form.is_valid():
        try:
            attributes = contacts.attributes_clean(
                workspace=workspace, values=form.attribute_texts()
            )
        except ApplicationError as error:
            form.add_error(None, error.message)
            for problem in error.extra.get("problems", []):
                form.add_error(None, problem)
        else:
            # Values of keys without a field (yet) are kept as they were.
            known = {field.key for field in custom_fields}
            kept = {key: value for key, value in contact.attributes.items() if key not in known}
            contacts.contact_update(
                contact=contact,
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                attributes={**kept, **attributes},
                acting_user=request.user,
            )
            messages.success(request, "Contact saved.")
            return redirect(
                "contacts:contact_detail", workspace_slug=workspace.slug, contact_id=contact.pk
            )
    return render(request, "contacts/contact_form.html", {"form": form, "contact": contact})


@workspace_view(Role.EDITOR)
@require_POST
def contact_delete(request: WorkspaceRequest, contact_id: int) -> HttpResponse:
    workspace = request.workspace
    contact = selectors.contact_get(workspace=workspace, contact_id=contact_id)
    contacts.contacts_delete(
        workspace=workspace,
        contacts=selectors.contact_filter_ids(workspace=workspace, ids=[contact.pk]),
        acting_user=request.user,
    )
    messages.success(request, f"{contact.email} deleted.")
    return redirect("contacts:contact_list", workspace_slug=workspace.slug)


def _subscriptions_response(request: WorkspaceRequest, contact) -> HttpResponse:
    if request.htmx:
        return render(
            request,
            "contacts/contact_detail.html#subscriptions-panel",
            _detail_context(request, contact),
        )
    return redirect(
        "contacts:contact_detail", workspace_slug=request.workspace.slug, contact_id=contact.pk
    )


@workspace_view(Role.EDITOR)
@require_POST
def contact_subscribe(request: WorkspaceRequest, contact_id: int) -> HttpResponse:
    workspace = request.workspace
    contact = selectors.contact_get(workspace=workspace, contact_id=contact_id)
    list_text = request.POST.get("list", "")
    if not list_text.isdigit():
        messages.error(request, "Choose a list.")
        return _subscriptions_response(request, contact)
    contact_list = selectors.list_get(workspace=workspace, list_id=int(list_text))
    try:
        subscriptions.subscription_subscribe(
            contact=contact,
            contact_list=contact_list,
            method="admin",
            source=f"Subscribed by {request.user.email}",
            actor=request.user,
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Subscribed to {contact_list.name}.")
    return _subscriptions_response(request, contact)


@workspace_view(Role.EDITOR)
@require_POST
def contact_unsubscribe(request: WorkspaceRequest, contact_id: int, list_id: int) -> HttpResponse:
    workspace = request.workspace
    contact = selectors.contact_get(workspace=workspace, contact_id=contact_id)
    contact_list = selectors.list_get(workspace=workspace, list_id=list_id)
    subscriptions.subscription_unsubscribe(
        contact=contact,
        contact_list=contact_list,
        method="admin",
        source=f"Unsubscribed by {request.user.email}",
        actor=request.user,
    )
    messages.success(request, f"Unsubscribed from {contact_list.name}.")
    return _subscriptions_response(request, contact)
