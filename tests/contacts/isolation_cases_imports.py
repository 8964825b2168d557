"""Isolation cases of contact imports (see tests/accounts/test_isolation.py)."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from accounts.models import Role
from contacts.models import ContactImport


def _import(workspace, status="mapping") -> dict:
    name = default_storage.save(f"workspaces/{workspace.pk}/imports/t.csv", ContentFile(b"email\n"))
    contact_import = ContactImport.objects.create(
        workspace=workspace,
        file_name=name,
        original_name="t.csv",
        encoding="utf-8",
        delimiter=",",
        columns=["email"],
        preview=[["a@example.com"]],
        mapping={"0": "email"},
        status=status,
    )
    return {"import_id": contact_import.pk}


CASES = {
    "contacts:import_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "contacts:import_upload": (lambda ws: {}, "get", None, False, Role.EDITOR),
    "contacts:import_detail": (_import, "get", None, False, Role.VIEWER),
    "contacts:import_progress": (lambda ws: _import(ws, "running"), "get", None, True, Role.VIEWER),
    "contacts:import_resume": (lambda ws: _import(ws, "failed"), "post", None, False, Role.EDITOR),
    "contacts:import_report": (lambda ws: _import(ws, "done"), "get", None, False, Role.VIEWER),
}
