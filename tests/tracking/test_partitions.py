"""The event table's monthly partitions: created ahead idempotently, a default partition's
rows moved into their month's partition when it is made, old months dropped whole (and old
default rows deleted) while kept months keep their events; the daily task does both.

DDL is transactional in PostgreSQL: every partition made or dropped here is rolled back
with the test."""

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from espsite.celery import app
from sending.models import Delivery
from tests.factories import ContactFactory
from tracking.models import Event
from tracking.partitions import event_partitions, event_partitions_ensure, event_partitions_expire
from tracking.tasks import tracking_partitions_task

pytestmark = pytest.mark.django_db


def _month(day: dt.date, shift: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 + shift
    return dt.date(index // 12, index % 12 + 1, 1)


def _name(month: dt.date) -> str:
    return f"tracking_event_{month:%Y%m}"


def _children() -> set[str]:
    """The event table's partitions, as PostgreSQL's catalogue lists them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.inhrelid::regclass::text FROM pg_inherits i "
            "WHERE i.inhparent = 'tracking_event'::regclass"
        )
        return {name for (name,) in cursor.fetchall()}


def _table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def _partition_of(event: Event) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM tracking_event WHERE id = %s", [event.pk]
        )
        return cursor.fetchone()[0]


@pytest.fixture
def delivery(workspace) -> Delivery:
    contact = ContactFactory(workspace=workspace)
    campaign = Campaign.objects.create(workspace=workspace, name="Spring", status="sent")
    return Delivery.objects.create(
        workspace=workspace, campaign=campaign, contact=contact, address=contact.email
    )


def _event(delivery: Delivery, when: dt.datetime) -> Event:
    return Event.objects.create(
        workspace_id=delivery.workspace_id,
        campaign_id=delivery.campaign_id,
        delivery=delivery,
        contact_id=delivery.contact_id,
        kind=Event.Kind.OPEN,
        occurred_at=when,
        event_key=uuid.uuid4(),
    )


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)


def test_ensure_creates_this_month_and_the_months_ahead_once():
    today = dt.date(2041, 11, 20)
    expected = [_name(_month(today, shift)) for shift in range(4)]
    assert event_partitions_ensure(today=today, ahead=3) == expected
    assert set(expected) <= _children()
    assert event_partitions_ensure(today=today, ahead=3) == []
    # A day later in the month, and a month on: only the new month is made.
    assert event_partitions_ensure(today=dt.date(2041, 12, 31), ahead=3) == [
        _name(dt.date(2042, 3, 1))
    ]
    assert set(expected) <= set(event_partitions())


def test_ensure_reads_the_months_ahead_from_settings(settings):
    settings.TRACKING_PARTITIONS_AHEAD = 1
    assert event_partitions_ensure(today=dt.date(2042, 12, 5)) == [
        "tracking_event_204212",
        "tracking_event_204301",
    ]


def test_an_event_without_its_month_waits_in_the_default_partition_then_moves(delivery):
    when = _at(dt.date(2043, 5, 17))
    event = _event(delivery, when)
    assert _partition_of(event) == "tracking_event_default"

    assert event_partitions_ensure(today=dt.date(2043, 5, 1), ahead=0) == ["tracking_event_204305"]
    assert _partition_of(event) == "tracking_event_204305"
    moved = Event.objects.get(pk=event.pk)
    assert (moved.occurred_at, moved.event_key) == (when, event.event_key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracking_event_default WHERE id = %s", [event.pk])
        assert cursor.fetchone()[0] == 0


def test_expire_drops_only_months_wholly_past_the_retention(settings, delivery):
    settings.TRACKING_EVENT_RETENTION_DAYS = 400
    today = timezone.now().date()
    cutoff = today - dt.timedelta(days=400)
    old = [_month(cutoff, -3), _month(cutoff, -2)]
    boundary = _month(cutoff)  # holds days inside the retention: kept
    for month in [*old, boundary]:
        event_partitions_ensure(today=month, ahead=0)
    before = _children()
    in_old = _event(delivery, _at(old[0] + dt.timedelta(days=3)))
    in_boundary = _event(delivery, _at(boundary))  # older than the cutoff, in a kept month
    old_default = _event(delivery, _at(_month(cutoff, -8)))
    recent_default = _event(delivery, _at(_month(today, -2)))  # no partition for that month
    assert _partition_of(old_default) == _partition_of(recent_default) == "tracking_event_default"

    dropped = event_partitions_expire(today=today)

    assert dropped == [_name(month) for month in old]
    assert _children() == before - set(dropped)
    assert not any(_table_exists(name) for name in dropped)  # dropped, not only detached
    assert "tracking_event_default" in _children()
    assert _name(boundary) in _children()
    kept = set(Event.objects.values_list("pk", flat=True))
    assert in_old.pk not in kept
    assert old_default.pk not in kept
    assert {in_boundary.pk, recent_default.pk} <= kept
    assert event_partitions_expire(today=today) == []


def test_the_daily_task_ensures_and_expires_and_is_on_the_beat(settings):
    settings.TRACKING_PARTITIONS_AHEAD = 4
    settings.TRACKING_EVENT_RETENTION_DAYS = 60
    today = timezone.now().date()
    stale = _month(today, -6)
    event_partitions_ensure(today=stale, ahead=0)

    result = tracking_partitions_task.delay().get()

    names = _children()
    assert {_name(_month(today, shift)) for shift in range(5)} <= names
    assert _name(stale) not in names
    assert _name(stale) in result["dropped"]
    assert tracking_partitions_task.delay().get() == {"created": [], "dropped": []}
    entry = app.conf.beat_schedule["tracking-partitions"]
    assert entry["task"] == tracking_partitions_task.name
    assert entry["schedule"] == 24 * 3600.0
