"""Isolation cases of the compliance workspace pages (see tests/accounts/test_isolation.py)."""

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from accounts.models import Role
from compliance.models import GdprRequest


def _done_export(workspace) -> dict:
    name = default_storage.save(
        f"workspaces/{workspace.pk}/gdpr/isolation/personal-data.zip", ContentFile(b"PK")
    )
    request = GdprRequest.objects.create(
        workspace=workspace, kind="export", email="a@example.com", requester="marketer",
        status="done", file_name=name,
    )  # fmt: skip
    return {"request_id": request.pk}


CASES = {
    "compliance_ws:audit_log": (lambda ws: {}, "get", None, False, Role.ADMIN),
    "compliance_ws:gdpr_requests": (lambda ws: {}, "get", None, False, Role.ADMIN),
    "compliance_ws:gdpr_request_create": (
        lambda ws: {},
        "post",
        {"email": "someone@example.com", "kind": "export"},
        False,
        Role.ADMIN,
    ),
    "compliance_ws:gdpr_download": (_done_export, "get", None, False, Role.ADMIN),
}
