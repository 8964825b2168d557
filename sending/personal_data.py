"""Personal data the sending app keeps: the address each delivery went to, and the remote
servers' replies about it (which often quote the address). Discovered by compliance."""

from datetime import datetime

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat

from accounts.models import Workspace
from sending.models import Delivery, DeliveryAttempt

MODELS = [Delivery, DeliveryAttempt]
ERASE_ORDER = 50  # before contacts deletes the contact rows the deliveries point at

_ERASED = "erased"


def _deliveries(workspace: Workspace, email: str):
    return Delivery.objects.for_workspace(workspace).filter(address__iexact=email.strip())


def export(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    deliveries = _deliveries(workspace, email)
    return {
        "deliveries": list(
            deliveries.values(
                "campaign__name",
                "address",
                "state",
                "skip_reason",
                "bounce_class",
                "last_response",
                "created_at",
                "sent_at",
            )
        ),
        "delivery_attempts": list(
            DeliveryAttempt.objects.filter(delivery__in=deliveries).values(
                "delivery__campaign__name",
                "transport",
                "remote_host",
                "smtp_code",
                "enhanced_code",
                "response",
                "outcome",
                "started_at",
            )
        ),
    }


def _redact(deliveries) -> int:
    """Keep each delivery's outcome for the campaign's numbers, without the address."""
    DeliveryAttempt.objects.filter(delivery__in=deliveries).update(response="")
    return deliveries.update(
        address=Concat(Value(f"{_ERASED}-"), F("pk")), last_response="", contact=None
    )


@transaction.atomic
def erase(*, workspace: Workspace, email: str) -> None:
    _redact(_deliveries(workspace, email))


def retain(*, older_than: datetime) -> int:
    """Deliveries older than the retention period keep their outcome, not their address."""
    old = Delivery.objects.filter(created_at__lt=older_than).exclude(
        address__startswith=f"{_ERASED}-"
    )
    return _redact(old)
