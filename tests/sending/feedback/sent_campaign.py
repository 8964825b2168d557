"""A sent campaign with everything that comes back, for the feedback surfaces' tests."""

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact
from sending.models import Delivery, DeliveryAttempt, FeedbackEvent, InboundMessage

HARD_DIAGNOSTIC = "smtp; 550 5.1.1 <hard@mail.test>: Recipient address rejected: User unknown"
BLOCK_DIAGNOSTIC = "554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked"


@dataclass
class Sent:
    campaign: Campaign
    contact: Contact
    ok: Delivery
    hard: Delivery
    soft: Delivery
    block: Delivery
    unclassified: Delivery
    complained: Delivery
    unsubscribed: Delivery
    inbound: InboundMessage


def sent_campaign(workspace, *, name: str = "Launch", contact: Contact | None = None) -> Sent:
    """Seven deliveries: one plain, a hard bounce by DSN, a soft bounce by DSN, a block at
    the relay, a bounce with no class, a complaint and an unsubscribe by email."""
    now = timezone.now()
    sent_at = now - dt.timedelta(hours=3)
    campaign = Campaign.objects.create(workspace=workspace, name=name, status="sent")
    contact = contact or Contact.objects.create(workspace=workspace, email="hard@mail.test")

    def delivery(address, state="sent", **fields) -> Delivery:
        fields.setdefault("sent_at", sent_at if state == "sent" or "bounced_at" in fields else None)
        return Delivery.objects.create(
            workspace=workspace, campaign=campaign, address=address, state=state, **fields
        )

    ok = delivery("ok@mail.test")
    hard = delivery(
        contact.email,
        "bounced",
        contact=contact,
        bounce_class="hard",
        bounced_at=now - dt.timedelta(hours=2),
        last_response="250 2.0.0 queued",
    )
    soft = delivery("soft@mail.test", "bounced", bounce_class="soft", bounced_at=now)
    block = delivery(
        "block@mail.test", "bounced", bounce_class="block", last_response=BLOCK_DIAGNOSTIC
    )
    unclassified = delivery("odd@mail.test", "bounced", bounce_class="unknown")
    complained = delivery("spam@mail.test", complained_at=now - dt.timedelta(hours=1))
    unsubscribed = delivery("bye@mail.test")
    DeliveryAttempt.objects.create(
        workspace=workspace, delivery=hard, transport="smtp", remote_host="relay.mail.test",
        smtp_code=250, enhanced_code="2.0.0", response="250 2.0.0 Ok: queued as 4Rk1x2",
        outcome="sent", started_at=sent_at,
    )  # fmt: skip
    DeliveryAttempt.objects.create(
        workspace=workspace, delivery=block, transport="mx", remote_host="mx.block.test",
        smtp_code=554, enhanced_code="5.7.1", response=BLOCK_DIAGNOSTIC, outcome="bounced",
        started_at=sent_at,
    )  # fmt: skip
    inbound = InboundMessage.objects.create(
        raw=b"From: MAILER-DAEMON\r\n\r\nhard@mail.test: user unknown\r\n",
        status="processed", kind="bounce", workspace=workspace, delivery=hard,
        recipients=[f"bounces+{hard.pk}@bounces.news.test"],
    )  # fmt: skip
    FeedbackEvent.objects.create(
        workspace=workspace, delivery=hard, kind="bounce", bounce_class="hard",
        rule="mailbox unknown", status="5.1.1", diagnostic=HARD_DIAGNOSTIC,
        remote_mta="mx.mail.test", address=contact.email, source="inbound",
        inbound_message=inbound, occurred_at=now - dt.timedelta(hours=2),
    )  # fmt: skip
    FeedbackEvent.objects.create(
        workspace=workspace, delivery=complained, kind="complaint", feedback_type="abuse",
        address="spam@mail.test", source="anymail:mailgun", event_id=f"ev-{complained.pk}",
        occurred_at=now - dt.timedelta(hours=1),
    )  # fmt: skip
    FeedbackEvent.objects.create(
        workspace=workspace, delivery=unsubscribed, kind="unsubscribe",
        address="bye@mail.test", source="inbound", occurred_at=now - dt.timedelta(minutes=30),
    )  # fmt: skip
    return Sent(
        campaign, contact, ok, hard, soft, block, unclassified, complained, unsubscribed, inbound
    )
