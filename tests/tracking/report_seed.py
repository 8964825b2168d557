"""A sent A/B campaign with the facts its report counts: deliveries of every outcome towards
several providers and both variants, complaints, unsubscribes naming it, and human and
machine opens and clicks stored through the ingestion path (tracking.ingest.hits_store)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field

from django.utils import timezone

from campaigns.models import AbTest, Campaign, Variant
from contacts.models import ConsentRecord
from sending.models import CampaignSend, Delivery
from tests.factories import ContactFactory
from tracking.ingest import Hit, hits_store

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"
LINKS = (
    "https://shop.example/spring?utm_source=mail",
    "https://shop.example/sale",
    '=HYPERLINK("https://evil.example")',  # a formula: the CSV export must defuse it
)
_serial = itertools.count()


@dataclass
class SeededCampaign:
    campaign: Campaign
    sent_at: dt.datetime
    variants: dict[str, Variant]
    deliveries: list[Delivery] = field(default_factory=list)
    stored: int = 0


# (provider, variant label or "", state, bounce class, bounced later, complained)
DELIVERIES = [
    ("google", "A", "sent", "", False, False),
    ("google", "A", "sent", "", False, False),
    ("google", "B", "sent", "", False, True),
    ("google", "B", "sent", "", False, False),
    ("microsoft", "A", "sent", "", False, False),
    ("microsoft", "B", "sent", "", False, False),
    ("microsoft", "", "sent", "", False, True),
    ("yahoo", "A", "sent", "", False, False),
    ("yahoo", "", "sent", "", False, False),
    ("", "", "sent", "", False, False),
    ("", "B", "sent", "", False, False),
    ("google", "", "sent", "", False, False),
    ("google", "A", "bounced", "hard", True, False),  # accepted, then a bounce report
    ("microsoft", "B", "bounced", "soft", False, False),  # refused during the session
    ("yahoo", "", "bounced", "block", False, False),
    ("google", "", "bounced", "", True, False),  # a bounce of no class: unknown
    ("yahoo", "A", "bounced", "unknown", False, False),
    ("google", "B", "deferred", "", False, False),
    ("microsoft", "", "failed", "soft", False, False),
    ("google", "", "skipped", "", False, False),
    ("yahoo", "", "holding", "", False, False),
    ("google", "A", "unknown", "", False, False),
    ("google", "A", "sent", "", False, False),  # delivered, never opened
    ("microsoft", "B", "sent", "", False, False),
    ("yahoo", "", "sent", "", False, False),
    ("apple", "A", "sent", "", False, False),
]


def report_campaign_seed(workspace, *, now: dt.datetime | None = None, name="Spring sale"):
    """Seed the campaign; its deliveries were sent 30 hours before `now`."""
    now = now or timezone.now()
    sent_at = now - dt.timedelta(hours=30)
    campaign = Campaign.objects.create(
        workspace=workspace,
        name=name,
        subject="Spring is here",
        html="<p>Hi</p>",
        from_email="news@news.shop.test",
        status=Campaign.Status.SENT,
    )
    CampaignSend.objects.create(
        workspace=workspace,
        campaign=campaign,
        deliveries_total=len(DELIVERIES),
        started_at=sent_at - dt.timedelta(minutes=5),
        finished_at=sent_at + dt.timedelta(minutes=5),
    )
    variants = {
        label: Variant.objects.create(
            workspace=workspace, campaign=campaign, label=label, subject=f"Subject {label}"
        )
        for label in ("A", "B")
    }
    AbTest.objects.create(
        workspace=workspace,
        campaign=campaign,
        winner=variants["B"],
        decided_at=sent_at + dt.timedelta(hours=4),
    )
    seeded = SeededCampaign(campaign=campaign, sent_at=sent_at, variants=variants)
    for provider, label, state, bounce_class, bounced_later, complained in DELIVERIES:
        handed_over = state in ("sent", "deferred", "unknown") or bounced_later
        seeded.deliveries.append(
            Delivery.objects.create(
                workspace=workspace,
                campaign=campaign,
                variant=variants.get(label),
                contact=ContactFactory(workspace=workspace),
                address=f"r{next(_serial)}@{provider or 'elsewhere'}.test",
                state=state,
                provider=provider,
                bounce_class=bounce_class,
                sent_at=sent_at if handed_over and state != "deferred" else None,
                bounced_at=sent_at + dt.timedelta(hours=1) if bounced_later else None,
                complained_at=sent_at + dt.timedelta(hours=2) if complained else None,
                updated_at=sent_at,
            )
        )
    _unsubscribes_seed(seeded)
    seeded.stored = _activity_seed(seeded)
    return seeded


def _unsubscribes_seed(seeded: SeededCampaign) -> None:
    deliveries = seeded.deliveries
    campaign = seeded.campaign

    def record(delivery, action="withdrawn", campaign_id=campaign.pk):
        ConsentRecord.objects.create(
            workspace_id=campaign.workspace_id,
            contact=delivery.contact,
            action=action,
            method="form",
            campaign_id=campaign_id,
            campaign_name=campaign.name,
            email=delivery.address,
        )

    record(deliveries[0])  # left two lists: one person
    record(deliveries[0])
    record(deliveries[4])
    record(deliveries[2])  # the complaint's withdrawal: counted as a complaint
    record(deliveries[5], action="granted")
    record(deliveries[7], campaign_id=campaign.pk + 100_000)  # another campaign


def _hit(delivery, kind, at, *, url="", method="GET", agent=BROWSER) -> Hit:
    return Hit(
        kind=kind,
        delivery_id=delivery.pk,
        url=url,
        occurred_at=at,
        ip="198.51.100.23",
        user_agent=agent,
        method=method,
        event_key=uuid.uuid4(),
    )


def _activity_seed(seeded: SeededCampaign) -> int:
    """Opens and clicks over two days, stored in time order, one batch per moment."""
    d, t0 = seeded.deliveries, seeded.sent_at

    def at(minutes: float) -> dt.datetime:
        return t0 + dt.timedelta(minutes=minutes)

    moments = [
        # A machine fetch at delivery (open_at_delivery) and a HEAD (head_request).
        [_hit(d[0], "open", at(0.01)), _hit(d[1], "open", at(0.01)), _hit(d[4], "open", at(0.01))],
        [_hit(d[5], "open", at(3), method="HEAD"), _hit(d[8], "click", at(3), url=LINKS[0],
                                                          method="HEAD")],
        # People.
        [_hit(d[0], "open", at(12)), _hit(d[2], "open", at(14)), _hit(d[7], "open", at(20))],
        [_hit(d[0], "click", at(13), url=LINKS[0]), _hit(d[2], "click", at(15), url=LINKS[1])],
        [_hit(d[0], "open", at(75)), _hit(d[9], "open", at(80)), _hit(d[3], "open", at(50))],
        [_hit(d[0], "click", at(76), url=LINKS[1]), _hit(d[0], "click", at(77), url=LINKS[0])],
        [_hit(d[10], "open", at(300)), _hit(d[10], "click", at(301), url=LINKS[2])],
        [_hit(d[5], "open", at(600)), _hit(d[6], "open", at(610)), _hit(d[8], "open", at(615))],
        [_hit(d[11], "open", at(1560)), _hit(d[11], "click", at(1561), url=LINKS[0]),
         _hit(d[3], "click", at(1570), url=LINKS[1], method="HEAD")],
    ]  # fmt: skip
    return sum(hits_store(batch) for batch in moments)
