"""Personal data the compliance app keeps: GDPR requests name the address they concern,
and finished exports are files of personal data in private storage."""

from datetime import datetime

from django.core.files.storage import default_storage
from django.db import models, transaction

from accounts.models import Workspace
from compliance.models import GdprRequest

MODELS = [GdprRequest]
ERASE_ORDER = 800


def _requests(workspace: Workspace, email: str):
    return GdprRequest.objects.for_workspace(workspace).filter(email__iexact=email.strip())


def export(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    return {
        "gdpr_requests": list(
            _requests(workspace, email).values(
                "kind", "email", "status", "requester", "created_at", "finished_at"
            )
        )
    }


def _forget(requests: models.QuerySet) -> int:
    """Blank the address and delete export files (after commit: a rollback keeps them)."""
    names = [name for name in requests.values_list("file_name", flat=True) if name]

    def delete_files() -> None:
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(delete_files)
    return requests.update(email="", file_name="")


def erase(*, workspace: Workspace, email: str) -> None:
    _forget(_requests(workspace, email))


def retain(*, older_than: datetime) -> int:
    """Requests finished before the cut-off forget their address and files."""
    return _forget(
        GdprRequest.objects.filter(finished_at__lt=older_than).exclude(email="", file_name="")
    )
