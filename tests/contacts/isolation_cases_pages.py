"""Isolation cases of the contacts pages (see tests/accounts/test_isolation.py)."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from accounts.downloads import workspace_file_name
from accounts.models import Role
from contacts.models import ContactExport, Suppression
from tests.factories import ContactFactory, ContactListFactory, FieldFactory


def _contact(ws):
    return {"contact_id": ContactFactory(workspace=ws).pk}


def _list(ws):
    return {"list_id": ContactListFactory(workspace=ws).pk}


def _field(ws):
    return {"field_id": FieldFactory(workspace=ws).pk}


def _subscribed(ws):
    contact = ContactFactory(workspace=ws)
    contact_list = ContactListFactory(workspace=ws)
    return {"contact_id": contact.pk, "list_id": contact_list.pk}


def _suppression(ws):
    suppression = Suppression.objects.create(
        workspace=ws, address_hash=f"hash-{ws.pk}", email="gone@example.com", reason="manual"
    )
    return {"suppression_id": suppression.pk}


def _export(ws):
    name = default_storage.save(
        workspace_file_name(workspace=ws, relative="exports/isolation.csv"),
        ContentFile(b"email\n"),
    )
    export = ContactExport.objects.create(
        workspace=ws,
        description="All contacts",
        status=ContactExport.Status.DONE,
        file_name=name,
        finished_at=timezone.now(),
    )
    return {"export_id": export.pk}


V, E = Role.VIEWER, Role.EDITOR

CASES = {
    "contacts:contact_list": (lambda ws: {}, "get", None, False, V),
    "contacts:contact_create": (lambda ws: {}, "post", {"email": "new@example.com"}, False, E),
    "contacts:contact_bulk": (
        lambda ws: {},
        "post",
        {"action": "delete", "scope": "all", "q": "nobody-matches"},
        False,
        E,
    ),
    "contacts:contact_detail": (_contact, "get", None, False, V),
    "contacts:contact_edit": (_contact, "post", {"first_name": "Ada"}, False, E),
    "contacts:contact_delete": (_contact, "post", None, False, E),
    "contacts:contact_subscribe": (_contact, "post", {"list": ""}, True, E),
    "contacts:contact_unsubscribe": (_subscribed, "post", None, True, E),
    "contacts:list_index": (lambda ws: {}, "get", None, False, V),
    "contacts:list_create": (lambda ws: {}, "post", {"name": "News", "opt_in": "single"}, False, E),
    "contacts:list_edit": (_list, "post", {"name": "Renamed", "opt_in": "double"}, False, E),
    "contacts:list_delete": (_list, "post", None, False, E),
    "contacts:field_list": (lambda ws: {}, "get", None, False, V),
    "contacts:field_create": (
        lambda ws: {},
        "post",
        {"key": "plan", "label": "Plan", "type": "text"},
        False,
        E,
    ),
    "contacts:field_edit": (_field, "post", {"label": "Renamed", "type": "text"}, False, E),
    "contacts:field_delete": (_field, "post", None, False, E),
    "contacts:suppression_list": (lambda ws: {}, "get", None, False, V),
    "contacts:suppression_add": (
        lambda ws: {},
        "post",
        {"addresses": "blocked@example.com"},
        False,
        E,
    ),
    "contacts:suppression_remove": (_suppression, "post", None, False, E),
    "contacts:export_list": (lambda ws: {}, "get", None, False, V),
    "contacts:export_create": (lambda ws: {}, "post", {"source": "all"}, False, E),
    "contacts:export_download": (_export, "get", None, False, V),
}
