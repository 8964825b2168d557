"""Demo opens and clicks for `manage.py seed_demo`: the sent "Welcome" campaign
(sending/demo.py) gets what a real send collects in its first two days, so that its report,
the Reports list and the dashboard panel show figures at once.

The hits go through the production path (`hits_store`): the machine rules judge each one as
they would a request's, and the counters are kept as the endpoints keep them. Each hit's
time follows its delivery's sent_at and its event key is derived from the delivery, so
seeding again stores nothing new (ON CONFLICT DO NOTHING) and counts nothing twice.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import transaction
from django.utils import timezone

from accounts.models import Workspace
from campaigns.models import Campaign
from sending.demo import DEMO_SENT_CAMPAIGN_NAME
from sending.models import Delivery
from tracking.dashboard import WINDOW_DAYS
from tracking.ingest import CLICK, OPEN, Hit, hits_store
from tracking.rollups import campaign_rollup_compute, workspace_days_compute

# The demo's event keys are uuid5 names under this namespace.
_KEYS = uuid.UUID("5f0c3e52-8a8e-4c51-9d4e-2f1b7f3a6e10")

_SITE = "https://demo-outdoor.example"
_PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
)
_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
# Mail Privacy Protection fetches with a bare agent from Apple's 17.0.0.0/8.
_APPLE_PROXY = "Mozilla/5.0"
# Gmail's image proxy fetches when the person opens (more than a minute after sending: human).
_GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


def _after(*, hours: float = 0, minutes: float = 0, seconds: float = 0) -> dt.timedelta:
    return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)


# (recipient: index among the delivered messages, kind, time after its sending, address,
# user agent, link). Machine ones: Apple's fetches on arrival (apple_mpp_network) and a
# mail gateway's link check seconds after delivery, from Mimecast's network (scanner_network).
_ACTIVITY = (
    (0, OPEN, _after(seconds=45), "17.58.63.120", _APPLE_PROXY, ""),
    (0, OPEN, _after(hours=20, minutes=12), "203.0.113.41", _PHONE, ""),
    (1, OPEN, _after(minutes=50), "198.51.100.23", _DESKTOP, ""),
    (1, CLICK, _after(minutes=52), "198.51.100.23", _DESKTOP, f"{_SITE}/shop/tents"),
    (1, OPEN, _after(hours=26, minutes=5), "198.51.100.23", _DESKTOP, ""),
    (2, OPEN, _after(minutes=1, seconds=10), "17.58.63.121", _APPLE_PROXY, ""),
    (3, CLICK, _after(seconds=3), "205.139.110.30", _DESKTOP, f"{_SITE}/welcome-offer"),
    (3, OPEN, _after(hours=3, minutes=40), "66.249.84.12", _GMAIL_PROXY, ""),
    (4, OPEN, _after(hours=2, minutes=15), "203.0.113.77", _PHONE, ""),
    (4, CLICK, _after(hours=2, minutes=17), "203.0.113.77", _PHONE, f"{_SITE}/welcome-offer"),
    (5, OPEN, _after(hours=9, minutes=30), "198.51.100.140", _MAC, ""),
    (6, OPEN, _after(minutes=3), "17.58.63.122", _APPLE_PROXY, ""),
    (6, OPEN, _after(hours=30, minutes=2), "203.0.113.9", _PHONE, ""),
    (6, CLICK, _after(hours=30, minutes=3), "203.0.113.9", _PHONE, f"{_SITE}/shop/tents"),
    (7, OPEN, _after(hours=47), "198.51.100.201", _DESKTOP, ""),
)


def _demo_hits(deliveries: list[Delivery], now: dt.datetime) -> list[Hit]:
    hits = []
    for number, (recipient, kind, after, ip, agent, url) in enumerate(_ACTIVITY):
        if recipient >= len(deliveries):
            continue
        delivery = deliveries[recipient]
        occurred_at = delivery.sent_at + after
        if occurred_at > now:  # a send seeded moments ago has no future yet
            continue
        hits.append(
            Hit(
                kind=kind,
                delivery_id=delivery.pk,
                url=url,
                occurred_at=occurred_at,
                ip=ip,
                user_agent=agent,
                method="GET",
                event_key=uuid.uuid5(_KEYS, f"{delivery.pk}:{number}"),
            )
        )
    return hits


@transaction.atomic
def tracking_demo_seed(*, workspace: Workspace) -> Campaign | None:
    """Idempotent: the demo's sent campaign gets its opens and clicks (human and machine),
    and its roll-up and the workspace's days are computed; that campaign, or None while the
    demo has none."""
    campaign = (
        Campaign.objects.for_workspace(workspace).filter(name=DEMO_SENT_CAMPAIGN_NAME).first()
    )
    if campaign is None or campaign.status != Campaign.Status.SENT:
        return None
    deliveries = list(
        Delivery.objects.filter(
            campaign=campaign, state=Delivery.State.SENT, sent_at__isnull=False
        ).order_by("pk")
    )
    now = timezone.now()
    hits_store(_demo_hits(deliveries, now))
    campaign_rollup_compute(campaign_id=campaign.pk, now=now)
    workspace_days_compute(workspace_id=workspace.pk, days=WINDOW_DAYS, now=now)
    return campaign
