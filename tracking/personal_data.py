"""Personal data the tracking app keeps: each open and click of a person's mail, with the
IP address and user agent it came from (buffered for a few seconds as a PendingHit, then
an Event), and per delivery what they opened and clicked. Discovered by compliance.

The per-campaign counters (HourlyActivity, LinkActivity) name nobody and stay after an
erasure: a report's totals do not change when one reader leaves.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import Q

from accounts.models import Workspace
from campaigns.models import Campaign
from contacts.models import Contact
from sending.models import Delivery
from tracking.models import DeliveryActivity, Event, LinkClick, PendingHit
from tracking.partitions import event_partitions_expire

MODELS = [Event, PendingHit, DeliveryActivity, LinkClick]
# Before sending (50), which takes the address off the deliveries this hook finds them by.
ERASE_ORDER = 40


def _contact_ids(workspace: Workspace, email: str) -> list[int]:
    contacts = Contact.objects.for_workspace(workspace).filter(email__iexact=email.strip())
    return list(contacts.values_list("pk", flat=True))


def _delivery_ids(workspace: Workspace, email: str, contact_ids: list[int]) -> list[int]:
    deliveries = Delivery.objects.for_workspace(workspace).filter(
        Q(address__iexact=email.strip()) | Q(contact_id__in=contact_ids)
    )
    return list(deliveries.values_list("pk", flat=True))


def _events(workspace: Workspace, email: str):
    """The person's events: of their contact, or of a delivery to their address (a contact
    deleted since has its events still named by the delivery)."""
    contact_ids = _contact_ids(workspace, email)
    delivery_ids = _delivery_ids(workspace, email, contact_ids)
    events = Event.objects.filter(workspace=workspace).filter(
        Q(contact_id__in=contact_ids) | Q(delivery_id__in=delivery_ids)
    )
    return events, delivery_ids


def export(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    events, delivery_ids = _events(workspace, email)
    rows = list(
        events.order_by("occurred_at", "id").values(
            "campaign_id", "kind", "occurred_at", "url", "machine_rule", "user_agent", "ip"
        )
    )
    names = dict(
        Campaign.objects.filter(
            workspace=workspace, pk__in={row["campaign_id"] for row in rows}
        ).values_list("pk", "name")
    )
    return {
        "events": [
            {
                "campaign": names.get(row["campaign_id"], ""),
                "kind": row["kind"],
                "occurred_at": row["occurred_at"],
                "url": row["url"],
                "is_machine": bool(row["machine_rule"]),
                "machine_rule": row["machine_rule"],
                "user_agent": row["user_agent"],
                "ip": row["ip"],
            }
            for row in rows
        ],
        # Answered in the last seconds, not yet stored as events.
        "pending_hits": list(
            PendingHit.objects.filter(delivery_id__in=delivery_ids)
            .order_by("occurred_at", "id")
            .values("kind", "occurred_at", "url", "user_agent", "ip")
        ),
    }


@transaction.atomic
def erase(*, workspace: Workspace, email: str) -> None:
    events, delivery_ids = _events(workspace, email)
    events.delete()
    PendingHit.objects.filter(delivery_id__in=delivery_ids).delete()
    LinkClick.objects.filter(workspace=workspace, delivery_id__in=delivery_ids).delete()
    DeliveryActivity.objects.filter(workspace=workspace, delivery_id__in=delivery_ids).delete()


def retain(*, older_than: datetime) -> int:
    """Events go whole: monthly partitions past TRACKING_EVENT_RETENTION_DAYS are dropped
    (tracking.partitions), and events older than the general retention are deleted when
    that period is the shorter one. The number of events deleted row by row."""
    event_partitions_expire()
    deleted, _ = Event.objects.filter(occurred_at__lt=older_than).delete()
    return deleted
