"""The group-commit writer: concurrent hits share batches and are all buffered; a failing
database or a stalled one makes hit_record False (logged) instead of hanging the request;
a forked process writes through a writer of its own."""

import logging
import os
import threading
import time

import pytest
from django.db import connection, transaction

from tests.factories import WorkspaceFactory
from tests.tracking.test_ingest import campaign_make, delivery_make, hit
from tracking.models import PendingHit
from tracking.writer import hit_record, hit_write, writer_stop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _writer_stopped():
    """Each test's writer goes with it (its connection too, before the database does)."""
    yield
    writer_stop(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tracking_event, tracking_pendinghit")


@pytest.fixture
def campaign():
    return campaign_make(WorkspaceFactory())


def test_concurrent_hits_are_all_stored_in_fewer_batches(campaign):
    deliveries = [delivery_make(campaign) for _ in range(20)]
    hits = [hit(deliveries[n % 20]) for n in range(200)]
    results = [None] * len(hits)
    barrier = threading.Barrier(len(hits))

    def record(n: int) -> None:
        barrier.wait(timeout=30)
        results[n] = hit_record(hits[n])

    threads = [threading.Thread(target=record, args=(n,)) for n in range(len(hits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == [True] * len(hits)
    with connection.cursor() as cursor:
        # Rows written by one transaction share its id (xmin): one per batch.
        cursor.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM tracking_pendinghit "
            "WHERE delivery_id = ANY(%s)",
            [[delivery.pk for delivery in deliveries]],
        )
        stored, batches = cursor.fetchone()
    assert stored == len(hits)
    assert 1 <= batches < len(hits)


def test_a_hit_of_a_missing_delivery_is_committed_and_said_unknown(campaign):
    delivery = delivery_make(campaign)
    assert hit_write(hit(delivery)).is_delivery_known is True
    outcome = hit_write(hit(delivery.pk + 10_000))
    assert (outcome.is_stored, outcome.is_delivery_known) == (True, False)


def test_a_database_failure_is_false_and_logged(campaign, failing_database, caplog):
    delivery = delivery_make(campaign)
    with caplog.at_level(logging.ERROR, logger="tracking.writer"):
        outcome = hit_write(hit(delivery))
    assert (outcome.is_stored, outcome.is_delivery_known) == (False, None)
    assert "not stored" in caplog.text
    assert "disk on fire" in caplog.text
    assert not PendingHit.objects.filter(delivery_id=delivery.pk).exists()  # rolled back


def test_the_writer_recovers_after_a_failure(campaign, caplog):
    delivery = delivery_make(campaign)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE tracking_pendinghit RENAME TO tracking_gone")
    try:
        with caplog.at_level(logging.ERROR, logger="tracking.writer"):
            assert hit_record(hit(delivery)) is False
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE tracking_gone RENAME TO tracking_pendinghit")
    assert hit_record(hit(delivery)) is True
    assert PendingHit.objects.filter(delivery_id=delivery.pk).count() == 1


def test_a_stalled_database_times_out_and_the_hit_is_written_later(campaign, settings, caplog):
    settings.TRACKING_WRITE_TIMEOUT_SECONDS = 0.3
    delivery = delivery_make(campaign)
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("LOCK TABLE tracking_pendinghit IN ACCESS EXCLUSIVE MODE")
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    assert locked.wait(timeout=10)
    stalled = hit(delivery)
    try:
        with caplog.at_level(logging.ERROR, logger="tracking.writer"):
            assert hit_record(stalled) is False
        assert "not written within 0.3 s" in caplog.text
    finally:
        release.set()
        holder.join(timeout=30)
    writer_stop(timeout=30)  # the batch waiting on the lock commits, then the thread ends
    assert PendingHit.objects.filter(event_key=stalled.event_key).count() == 1


def test_a_forked_process_writes_through_its_own_writer(campaign):
    delivery = delivery_make(campaign)
    assert hit_record(hit(delivery))  # the parent's writer is running
    from_child = hit(delivery)
    pid = os.fork()
    if pid == 0:  # the child: its writer thread and connection are its own
        code = 1
        try:
            code = 0 if hit_record(from_child) else 2
            writer_stop(timeout=10)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PendingHit.objects.filter(event_key=from_child.event_key).exists()
    assert hit_record(hit(delivery))  # and the parent's still works
    assert PendingHit.objects.filter(delivery_id=delivery.pk).count() == 3


def test_a_lone_hit_waits_no_longer_than_the_linger(campaign, settings):
    settings.TRACKING_WRITE_LINGER_SECONDS = 0.05
    settings.TRACKING_WRITE_LINGER_HITS = 1000
    delivery = delivery_make(campaign)
    assert hit_record(hit(delivery))  # the writer is up
    started = time.monotonic()
    assert hit_record(hit(delivery))
    waited = time.monotonic() - started
    assert 0.05 <= waited < 2


def test_lingering_gathers_hits_that_arrive_one_by_one_into_one_batch(campaign, settings):
    settings.TRACKING_WRITE_LINGER_SECONDS = 2.0
    settings.TRACKING_WRITE_LINGER_HITS = 5
    deliveries = [delivery_make(campaign) for _ in range(5)]
    assert hit_record(hit(deliveries[0]))  # the writer is up (after a 2 s linger)
    threads = []
    for delivery in deliveries:  # staggered: each would be a batch of its own without it
        threads.append(threading.Thread(target=hit_record, args=(hit(delivery),)))
        threads[-1].start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM tracking_pendinghit "
            "WHERE id > (SELECT min(id) FROM tracking_pendinghit)"
        )
        assert cursor.fetchone() == (5, 1)  # the fifth hit ended the wait: one commit
