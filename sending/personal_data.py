"""Personal data the sending app keeps: the address each delivery went to, the remote
servers' replies about it (which often quote the address), the feedback events read from
bounces, complaints and ESP webhooks, and the raw inbound mail they came in (which quotes
the address, and often the message sent to it). Discovered by compliance."""

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Func, Q, TextField, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from accounts.models import Workspace
from sending.models import Delivery, DeliveryAttempt, FeedbackEvent, InboundMessage

MODELS = [Delivery, DeliveryAttempt, FeedbackEvent, InboundMessage]
ERASE_ORDER = 50  # before contacts deletes the contact rows the deliveries point at

_ERASED = "erased"


def _deliveries(workspace: Workspace, email: str):
    return Delivery.objects.for_workspace(workspace).filter(address__iexact=email.strip())


def _feedback(workspace: Workspace, email: str, delivery_ids: list[int]):
    return FeedbackEvent.objects.for_workspace(workspace).filter(
        Q(address__iexact=email.strip()) | Q(delivery__in=delivery_ids)
    )


def _inbound(workspace: Workspace, delivery_ids: list[int]):
    """Stored mail about those deliveries: matched to one, or read into one's events."""
    events = FeedbackEvent.objects.filter(delivery__in=delivery_ids, inbound_message__isnull=False)
    return InboundMessage.objects.filter(
        Q(workspace=workspace, delivery__in=delivery_ids)
        | Q(pk__in=events.values("inbound_message"))
    )


def _unmatched_inbound_ids(email: str) -> list[int]:
    """Stored mail tied to no workspace (unknown or forged tokens, mail not understood)
    that names the address: its envelope, or its raw bytes. Bounded: only such rows, and
    only those retention has not deleted yet; the raw bytes are searched as text by
    PostgreSQL (its escape encoding keeps ASCII as it is), then each candidate is checked
    here for the whole address (not "richard@" for "hard@")."""
    address = email.strip().lower()
    since = timezone.now() - timedelta(days=settings.INBOUND_RETENTION_DAYS)
    whole = re.compile(
        rb"(?<![a-z0-9._%+=-])" + re.escape(address.encode()) + rb"(?![a-z0-9-]|\.[a-z0-9])",
        re.IGNORECASE,
    )
    candidates = (
        InboundMessage.objects.filter(workspace__isnull=True, received_at__gte=since)
        .alias(
            raw_text=Func(F("raw"), Value("escape"), function="encode", output_field=TextField()),
            recipients_text=Cast("recipients", TextField()),
        )
        .filter(
            Q(mail_from__iexact=address)
            | Q(recipients_text__icontains=address)
            | Q(raw_text__icontains=address)
        )
        .values_list("pk", "mail_from", "recipients", "raw")
    )
    return [
        pk
        for pk, mail_from, recipients, raw in candidates.iterator(chunk_size=20)
        if mail_from.strip().lower() == address
        or address in [str(r).strip().strip("<>").lower() for r in recipients or []]
        or whole.search(bytes(raw or b""))
    ]


def export(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    deliveries = _deliveries(workspace, email)
    delivery_ids = list(deliveries.values_list("pk", flat=True))
    inbound = _inbound(workspace, delivery_ids).values(
        "received_at", "mail_from", "recipients", "size", "status", "kind", "summary", "raw"
    )
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
                "bounced_at",
                "complained_at",
            )
        ),
        "delivery_attempts": list(
            DeliveryAttempt.objects.filter(delivery__in=delivery_ids).values(
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
        "feedback_events": list(
            _feedback(workspace, email, delivery_ids).values(
                "delivery__campaign__name",
                "kind",
                "bounce_class",
                "status",
                "diagnostic",
                "remote_mta",
                "feedback_type",
                "address",
                "source",
                "occurred_at",
            )
        ),
        "inbound_messages": [
            {**row, "raw": bytes(row["raw"] or b"").decode("utf-8", errors="replace")}
            for row in inbound
        ],
    }


def _redact(deliveries) -> int:
    """Keep each delivery's outcome for the campaign's numbers, without the address."""
    DeliveryAttempt.objects.filter(delivery__in=deliveries).update(response="")
    return deliveries.update(
        address=Concat(Value(f"{_ERASED}-"), F("pk")), last_response="", contact=None
    )


def _redact_feedback(events) -> int:
    """Keep the event's kind and class (the bounce and complaint rates), not whom it named."""
    return events.update(address=Concat(Value(f"{_ERASED}-"), F("pk")), diagnostic="")


@transaction.atomic
def erase(*, workspace: Workspace, email: str) -> None:
    deliveries = _deliveries(workspace, email)
    # Read before the deliveries lose their address.
    delivery_ids = list(deliveries.values_list("pk", flat=True))
    _inbound(workspace, delivery_ids).delete()
    if "@" in email:  # never a search for less than an address
        InboundMessage.objects.filter(pk__in=_unmatched_inbound_ids(email)).delete()
    _redact_feedback(_feedback(workspace, email, delivery_ids))
    _redact(deliveries)


def retain(*, older_than: datetime) -> int:
    """Deliveries and feedback older than the retention period keep their outcome, not
    their address; raw inbound mail, the most personal of all, goes whole after
    INBOUND_RETENTION_DAYS (or the general period, if that is shorter)."""
    inbound_cutoff = max(
        older_than, timezone.now() - timedelta(days=settings.INBOUND_RETENTION_DAYS)
    )
    inbound_count, _ = InboundMessage.objects.filter(received_at__lt=inbound_cutoff).delete()
    old_feedback = FeedbackEvent.objects.filter(occurred_at__lt=older_than).exclude(
        address__startswith=f"{_ERASED}-", diagnostic=""
    )
    old = Delivery.objects.filter(created_at__lt=older_than).exclude(
        address__startswith=f"{_ERASED}-"
    )
    return inbound_count + _redact_feedback(old_feedback) + _redact(old)
