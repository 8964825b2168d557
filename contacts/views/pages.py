"""The contacts pages: table, contact detail, lists, fields, suppressions, exports."""

from django.contrib import messages
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.downloads import workspace_file_response
from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from contacts import selectors
from contacts.forms import (
    BulkActionForm,
    ContactFilterForm,
    ContactForm,
    FieldForm,
    ListForm,
    SuppressionAddForm,
)
from contacts.models import ContactExport
from contacts.services import bulk, contacts, exports, fields, lists, subscriptions, suppressions

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
