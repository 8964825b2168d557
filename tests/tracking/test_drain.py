"""The buffer between the endpoints and the events: hits of unknown deliveries are not
buffered; the drain stores each buffered hit once with its counters and deletes it in the
same transaction; a drain that fails leaves its hits buffered; drains running at once
take different hits; the task empties the buffer."""

import threading
import uuid

import pytest
from django.db import connection, connections, transaction

from tests.factories import WorkspaceFactory
from tests.tracking.test_ingest import campaign_make, delivery_make, hit
from tracking.ingest import Hit, hits_buffer, pending_hits_drain, pending_hits_drain_all
from tracking.models import DeliveryActivity, Event, PendingHit
from tracking.tasks import pending_hits_drain_task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def campaign():
    return campaign_make(WorkspaceFactory())


def test_only_hits_of_existing_deliveries_are_buffered(campaign):
    delivery = delivery_make(campaign)
    known = hits_buffer([hit(delivery), hit(delivery.pk + 10_000)])
    assert known == {delivery.pk}
    assert list(PendingHit.objects.values_list("delivery_id", flat=True)) == [delivery.pk]


def test_the_drain_stores_events_and_counters_once_and_empties_the_buffer(campaign, settings):
    settings.TRACKING_DRAIN_BATCH = 3
    deliveries = [delivery_make(campaign) for _ in range(4)]
    again = hit(deliveries[0])
    hits_buffer([again, again])  # a batch written twice after a lost connection
    hits_buffer([hit(delivery) for delivery in deliveries])
    assert PendingHit.objects.count() == 6

    assert pending_hits_drain() == (3, 2)  # the oldest three: `again` twice counts once
    assert PendingHit.objects.count() == 3
    assert pending_hits_drain_all() == (3, 3)
    assert not PendingHit.objects.exists()
    assert Event.objects.count() == 5
    assert Event.objects.filter(event_key=again.event_key).count() == 1
    assert DeliveryActivity.objects.get(delivery=deliveries[0]).opens == 2


def test_a_failing_drain_leaves_its_hits_buffered(campaign):
    delivery = delivery_make(campaign)
    hits_buffer([hit(delivery), hit(delivery)])
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE tracking_deliveryactivity RENAME TO tracking_gone")
    try:
        with pytest.raises(Exception, match="tracking_deliveryactivity"):
            pending_hits_drain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE tracking_gone RENAME TO tracking_deliveryactivity")
    assert PendingHit.objects.count() == 2
    assert not Event.objects.exists()
    assert pending_hits_drain() == (2, 2)


def test_drains_running_at_once_take_different_hits(campaign, settings):
    settings.TRACKING_DRAIN_BATCH = 10
    deliveries = [delivery_make(campaign) for _ in range(20)]
    hits_buffer([hit(delivery) for delivery in deliveries])
    taken_first = threading.Event()
    results = []

    def drain_holding() -> None:
        try:
            with transaction.atomic():
                results.append(pending_hits_drain())
                taken_first.set()
                release.wait(timeout=30)  # its ten hits stay locked meanwhile
        finally:
            connection.close()

    release = threading.Event()
    holder = threading.Thread(target=drain_holding)
    holder.start()
    try:
        assert taken_first.wait(timeout=30)
        assert pending_hits_drain() == (10, 10)  # the other ten, without waiting
    finally:
        release.set()
        holder.join(timeout=30)
    assert results == [(10, 10)]
    assert sorted(Event.objects.values_list("delivery_id", flat=True)) == sorted(
        delivery.pk for delivery in deliveries
    )
    assert not PendingHit.objects.exists()


def test_the_task_empties_the_buffer(campaign, settings):
    settings.TRACKING_DRAIN_BATCH = 2
    deliveries = [delivery_make(campaign) for _ in range(5)]
    hits_buffer([hit(delivery, key=uuid.uuid4()) for delivery in deliveries])
    assert pending_hits_drain_task() == {"hits": 5, "events": 5, "skipped": 0}
    assert not PendingHit.objects.exists()


def test_a_drain_task_finds_another_running_and_ends_at_once(campaign):
    hits_buffer([hit(delivery_make(campaign))])
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext('tracking.pending_hits'), 0)")
        assert pending_hits_drain_task() == {"hits": 0, "events": 0, "skipped": 1}
        assert PendingHit.objects.count() == 1
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext('tracking.pending_hits'), 0)")
    finally:
        other.close()
    assert pending_hits_drain_task() == {"hits": 1, "events": 1, "skipped": 0}


def test_a_hit_with_a_malformed_address_is_buffered_without_it(campaign):
    delivery = delivery_make(campaign)
    good = hit(delivery)
    bad = Hit(**{**good.__dict__, "ip": "not-an-ip", "event_key": uuid.uuid4()})
    assert hits_buffer([good, bad]) == {delivery.pk}
    assert sorted(map(str, PendingHit.objects.values_list("ip", flat=True)), key=str) == [
        "198.51.100.23",
        "None",
    ]
