"""The tracking app's GDPR hooks, through compliance's discovery: a person's opens and
clicks exported (kind, time, URL, machine flag, user agent, IP) and erased with the per
delivery rows, the anonymous campaign counters kept; retention drops old events."""

import datetime as dt
import hashlib
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from compliance.gdpr import gdpr_collect, gdpr_erase, gdpr_retention_apply, personal_data_hooks
from sending.models import Delivery
from tests.factories import ContactFactory, WorkspaceFactory
from tracking import personal_data
from tracking.models import (
    DeliveryActivity,
    Event,
    HourlyActivity,
    LinkActivity,
    LinkClick,
    PendingHit,
)
from tracking.partitions import event_partitions, event_partitions_ensure

pytestmark = pytest.mark.django_db

EMAIL = "Erin.Quist@example.com"
URL = "https://shop.example/sale"
URL_HASH = hashlib.sha256(URL.encode()).hexdigest()
NOW = timezone.now()


def _sent(workspace, campaign, contact) -> Delivery:
    return Delivery.objects.create(
        workspace=workspace,
        campaign=campaign,
        contact=contact,
        address=contact.email,
        state=Delivery.State.SENT,
        sent_at=NOW - dt.timedelta(hours=2),
    )


def _event(delivery: Delivery, kind: str, *, ago: dt.timedelta, **fields) -> Event:
    return Event.objects.create(
        workspace_id=delivery.workspace_id,
        campaign_id=delivery.campaign_id,
        delivery=delivery,
        contact_id=delivery.contact_id,
        kind=kind,
        occurred_at=NOW - ago,
        event_key=uuid.uuid4(),
        **fields,
    )


def _activity(delivery: Delivery) -> None:
    """The per-delivery rows and the campaign's anonymous counters the events fed."""
    common = {"workspace_id": delivery.workspace_id, "campaign_id": delivery.campaign_id}
    DeliveryActivity.objects.create(
        delivery=delivery, opens=1, clicks=1, last_event_at=NOW, **common
    )
    LinkClick.objects.create(delivery=delivery, url_hash=URL_HASH, first_click_at=NOW, **common)
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    HourlyActivity.objects.get_or_create(hour=hour, defaults={"opens": 2}, **common)
    LinkActivity.objects.get_or_create(
        url_hash=URL_HASH, defaults={"url": URL, "clicks": 2}, **common
    )


@pytest.fixture
def world():
    """The person and a neighbour in one workspace (one campaign), and the same address in
    another workspace: each opened and clicked."""
    workspace, elsewhere = WorkspaceFactory(), WorkspaceFactory()
    campaign = Campaign.objects.create(workspace=workspace, name="Spring", status="sent")
    other_campaign = Campaign.objects.create(workspace=elsewhere, name="Other", status="sent")
    person = ContactFactory(workspace=workspace, email=EMAIL)
    neighbour = ContactFactory(workspace=workspace, email="olive@example.net")
    twin = ContactFactory(workspace=elsewhere, email=EMAIL.lower())
    deliveries = {
        "person": _sent(workspace, campaign, person),
        "neighbour": _sent(workspace, campaign, neighbour),
        "twin": _sent(elsewhere, other_campaign, twin),
    }
    for delivery in deliveries.values():
        _event(
            delivery,
            Event.Kind.OPEN,
            ago=dt.timedelta(minutes=50),
            machine_rule="apple_mpp_network",
            ip="17.58.0.1",
            user_agent="Mozilla/5.0",
        )
        _event(
            delivery,
            Event.Kind.CLICK,
            ago=dt.timedelta(minutes=40),
            url=URL,
            ip="203.0.113.77",
            user_agent="Firefox/130.0",
        )
        _activity(delivery)
    return {"workspace": workspace, "campaign": campaign, **deliveries}


def _event_count(**filters) -> int:
    return Event.objects.filter(**filters).count()


def test_compliance_discovers_the_tracking_hook():
    assert personal_data_hooks()["tracking"] is personal_data
    assert {Event, PendingHit, DeliveryActivity, LinkClick} <= set(personal_data.MODELS)
    # Before sending's hook, which takes the address off the deliveries.
    assert personal_data.ERASE_ORDER < personal_data_hooks()["sending"].ERASE_ORDER


def test_export_lists_the_persons_events_only(world):
    tables = gdpr_collect(workspace=world["workspace"], email=EMAIL.upper())
    opened, clicked = tables["tracking.events"]
    assert opened == {
        "campaign": "Spring",
        "kind": "open",
        "occurred_at": NOW - dt.timedelta(minutes=50),
        "url": "",
        "is_machine": True,
        "machine_rule": "apple_mpp_network",
        "user_agent": "Mozilla/5.0",
        "ip": "17.58.0.1",
    }
    assert (clicked["kind"], clicked["url"], clicked["is_machine"]) == ("click", URL, False)
    assert (clicked["ip"], clicked["user_agent"]) == ("203.0.113.77", "Firefox/130.0")


def test_export_finds_events_of_a_delivery_whose_contact_is_gone(world):
    Delivery.objects.filter(pk=world["person"].pk).update(contact=None)
    Event.objects.filter(delivery=world["person"]).update(contact=None)
    [contact] = world["workspace"].contact_set.filter(email=EMAIL)
    contact.delete()
    rows = personal_data.export(workspace=world["workspace"], email=EMAIL)["events"]
    assert [row["kind"] for row in rows] == ["open", "click"]


def test_export_of_a_stranger_is_empty(world):
    assert personal_data.export(workspace=world["workspace"], email="nobody@example.com") == {
        "events": [],
        "pending_hits": [],
    }


def test_hits_not_yet_drained_are_exported_and_erased_with_the_person(world):
    person, neighbour = world["person"], world["neighbour"]
    for delivery, agent in ((person, "Firefox/130.0"), (neighbour, "Safari/17")):
        PendingHit.objects.create(
            kind="open",
            delivery_id=delivery.pk,
            occurred_at=NOW,
            ip="203.0.113.9",
            user_agent=agent,
            event_key=uuid.uuid4(),
        )
    rows = personal_data.export(workspace=world["workspace"], email=EMAIL)["pending_hits"]
    assert [(row["kind"], row["ip"], row["user_agent"]) for row in rows] == [
        ("open", "203.0.113.9", "Firefox/130.0")
    ]

    gdpr_erase(workspace=world["workspace"], email=EMAIL, acting_user=None)

    assert not PendingHit.objects.filter(delivery_id=person.pk).exists()
    assert PendingHit.objects.filter(delivery_id=neighbour.pk).count() == 1


def test_erasure_deletes_the_persons_events_and_delivery_rows_and_keeps_the_counters(world):
    person, neighbour, twin = world["person"], world["neighbour"], world["twin"]
    counters = (HourlyActivity.objects.count(), LinkActivity.objects.count())

    gdpr_erase(workspace=world["workspace"], email=EMAIL, acting_user=None)

    assert _event_count(delivery=person) == 0
    with connection.cursor() as cursor:  # nothing left in any partition either
        cursor.execute("SELECT count(*) FROM tracking_event WHERE delivery_id = %s", [person.pk])
        assert cursor.fetchone()[0] == 0
    assert not DeliveryActivity.objects.filter(delivery=person).exists()
    assert not LinkClick.objects.filter(delivery=person).exists()
    for delivery in (neighbour, twin):
        assert _event_count(delivery=delivery) == 2
        assert DeliveryActivity.objects.filter(delivery=delivery).exists()
        assert LinkClick.objects.filter(delivery=delivery).exists()
    assert (HourlyActivity.objects.count(), LinkActivity.objects.count()) == counters
    hour = HourlyActivity.objects.get(campaign=world["campaign"])
    assert hour.opens == 2


def test_retention_drops_events_past_the_tracking_retention_with_their_partition(settings, world):
    settings.TRACKING_EVENT_RETENTION_DAYS = 100
    old_month = (NOW - dt.timedelta(days=200)).date().replace(day=1)
    event_partitions_ensure(today=old_month, ahead=0)
    old_day = dt.datetime.combine(old_month + dt.timedelta(days=5), dt.time(9), tzinfo=dt.UTC)
    old = _event(world["person"], Event.Kind.OPEN, ago=NOW - old_day)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM tracking_event WHERE id = %s", [old.pk]
        )
        assert cursor.fetchone()[0] == f"tracking_event_{old_month:%Y%m}"
    recent = set(Event.objects.exclude(pk=old.pk).values_list("pk", flat=True))

    counts = gdpr_retention_apply(now=NOW)

    assert f"tracking_event_{old_month:%Y%m}" not in event_partitions()
    assert not Event.objects.filter(pk=old.pk).exists()
    assert set(Event.objects.values_list("pk", flat=True)) == recent
    assert counts["tracking"] == 0  # the old month went whole, not row by row


def test_retention_deletes_events_older_than_a_shorter_general_retention(settings, world):
    settings.TRACKING_EVENT_RETENTION_DAYS = 10_000
    stale = _event(world["neighbour"], Event.Kind.CLICK, ago=dt.timedelta(days=40), url=URL)
    assert personal_data.retain(older_than=NOW - dt.timedelta(days=30)) == 1
    assert not Event.objects.filter(pk=stale.pk).exists()
    assert _event_count(delivery=world["neighbour"]) == 2
