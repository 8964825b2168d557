"""The demo's sent campaign has a real report after `seed_demo`: opens and clicks stored
through the ingestion path (people's, Apple's proxy fetches, a gateway's link check), its
roll-up and the workspace's days computed; seeding again adds nothing."""

import re

import pytest
from django.core.management import call_command
from django.db.models import Sum

from accounts.demo import DEMO_EMAIL
from accounts.models import User, Workspace
from campaigns.models import Campaign
from contacts.models import Contact
from sending.demo import DEMO_SENT_CAMPAIGN_NAME
from tests.factories import WorkspaceFactory
from tracking.demo import tracking_demo_seed
from tracking.models import (
    CampaignRollup,
    DeliveryActivity,
    Event,
    HourlyActivity,
    LinkActivity,
    WorkspaceDay,
)

pytestmark = pytest.mark.django_db


def _stored() -> tuple:
    activity = DeliveryActivity.objects.aggregate(
        opens=Sum("opens"), clicks=Sum("clicks"), human_opens=Sum("human_opens")
    )
    hourly = HourlyActivity.objects.aggregate(opens=Sum("opens"), clicks=Sum("clicks"))
    links = LinkActivity.objects.aggregate(clicks=Sum("clicks"))
    return (Event.objects.count(), activity, hourly, links, WorkspaceDay.objects.count())


def _fact(page: str, name: str) -> int:
    found = re.search(rf'data-fact="{name}">([\d,]+)<', page)
    assert found, f"no {name} on the report"
    return int(found.group(1).replace(",", ""))


def test_seed_demo_gives_the_sent_campaign_a_report_with_machine_opens_once(client, capsys):
    call_command("seed_demo", force=True)
    stored = _stored()
    call_command("seed_demo", force=True)
    assert _stored() == stored

    demo = Workspace.objects.get(slug="demo")
    welcome = Campaign.objects.get(workspace=demo, name=DEMO_SENT_CAMPAIGN_NAME)
    events = Event.objects.filter(campaign_id=welcome.pk)
    opens, clicks = events.filter(kind="open"), events.filter(kind="click")
    human_opens, human_clicks = opens.filter(machine_rule=""), clicks.filter(machine_rule="")
    # Apple's proxy opened on arrival from 17.0.0.0/8; a gateway checked a link at once.
    apple = opens.filter(machine_rule="apple_mpp_network")
    assert apple.exists()
    assert all(event.ip.startswith("17.") for event in apple)
    scanned = clicks.exclude(machine_rule="").get()
    assert (scanned.occurred_at - scanned.delivery.sent_at).total_seconds() < 10
    # People read over the days after the send.
    first_sent = welcome.deliveries.order_by("sent_at").first().sent_at
    days = {(event.occurred_at - first_sent).days for event in human_opens}
    assert len(days) >= 2
    assert 0 < human_opens.count() < opens.count()
    assert 0 < human_clicks.count() < clicks.count()
    # The counters the ingestion kept agree with the events (none counted twice).
    assert stored[1]["opens"] == opens.count()
    assert stored[3]["clicks"] == clicks.count()
    assert CampaignRollup.objects.get(campaign=welcome).counts["opens"] == opens.count()
    window = WorkspaceDay.objects.filter(workspace=demo)
    assert sum(day.counts.get("opens", 0) for day in window) == opens.count()

    out = capsys.readouterr().out
    report_url = f"/w/demo/reports/campaigns/{welcome.pk}/"
    assert report_url in out
    client.force_login(User.objects.get(email=DEMO_EMAIL))
    page = client.get(report_url).content.decode()
    assert _fact(page, "opens") == opens.count()
    assert _fact(page, "human_opens") == human_opens.count()
    assert _fact(page, "clicks") == clicks.count()
    assert _fact(page, "human_clicks") == human_clicks.count()
    assert _fact(page, "unique_opens") == opens.values("delivery_id").distinct().count()
    assert "https://demo-outdoor.example/shop/tents" in page
    assert 'data-chart="opens"' in page


def test_tracking_demo_seed_waits_for_the_sent_campaign():
    workspace = WorkspaceFactory()
    Contact.objects.create(workspace=workspace, email="only@example.org")
    assert tracking_demo_seed(workspace=workspace) is None
    assert not Event.objects.exists()
