"""The spool: a hit is the kernel's once spooled; the flusher buffers every spooled hit
once; a failing database keeps hits spooled; full segments are replaced; what a dead
process left is adopted, once, whoever adopts it; damaged lines cost only themselves."""

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from tests.factories import WorkspaceFactory
from tests.tracking.test_durability import _database_url
from tests.tracking.test_ingest import campaign_make, delivery_make, hit
from tracking.ingest import Hit, rows_buffer
from tracking.models import PendingHit
from tracking.spool import (
    HITS_SUFFIX,
    LOCK_SUFFIX,
    hit_line,
    hit_spool,
    spool_flush,
    spool_stop,
    spools_adopt,
)

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def spool_dir(settings, tmp_path) -> Path:
    """A spool directory of the test's own (the session's spool is stopped first)."""
    spool_stop(timeout=30)
    settings.TRACKING_SPOOL_DIR = tmp_path / "spool"
    # The flusher waits: the tests flush when they choose.
    settings.TRACKING_SPOOL_FLUSH_SECONDS = 3600
    yield tmp_path / "spool"
    spool_stop(timeout=30)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tracking_event, tracking_pendinghit")


@pytest.fixture
def deliveries():
    campaign = campaign_make(WorkspaceFactory())
    return [delivery_make(campaign) for _ in range(10)]


def buffered_keys() -> list:
    return list(PendingHit.objects.values_list("event_key", flat=True))


def dead_spool_make(directory: Path, name: str, segments: list[bytes]) -> None:
    """What a killed process leaves: its lock file, no longer locked, and its segments."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}{LOCK_SUFFIX}").touch()
    for number, data in enumerate(segments):
        (directory / f"{name}-{number}{HITS_SUFFIX}").write_bytes(data)


@pytest.mark.parametrize(
    ("agent", "url", "ip", "method", "stored"),
    [
        (
            'Zoë\'s "browser" \\ 1.0\n\t\x00\u2028',
            "",
            "198.51.100.7",
            "GET",
            {
                "ip": "198.51.100.7",
                "method": "GET",
                "user_agent": 'Zoë\'s "browser" \\ 1.0\n\t\u2028',
            },
        ),
        (
            "x" * 500,
            'https://shop.example/"q"?a=ü&b=\\',
            "2001:DB8::1",
            "head",
            {"ip": "2001:db8::1", "method": "HEAD", "user_agent": "x" * 300},
        ),
        ("", "https://shop.example/", "999.1.2.3", "PROPFIND-LONG", {"method": "PROPFIN"}),
        ("Mozilla/5.0", "https://shop.example/", None, "", {"method": "GET"}),
    ],
)
def test_a_spool_line_is_the_buffers_row_in_json(agent, url, ip, method, stored):
    one = Hit("click", 7, url, timezone.now(), ip, agent, method, uuid.uuid4())
    line = hit_line(one)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {
        "kind": "click",
        "delivery_id": 7,
        "url": url,
        "occurred_at": one.occurred_at.isoformat(),
        "ip": None,  # unless the case says
        "user_agent": agent,
        "method": method,
        "event_key": str(one.event_key),
        **stored,
    }
    assert rows_buffer(f"[{line.decode()}]") == frozenset()  # PostgreSQL reads it (no delivery 7)


def test_hits_from_many_threads_are_all_buffered_once_in_few_inserts(deliveries):
    hits = [hit(deliveries[n % 10]) for n in range(400)]
    results = [None] * len(hits)
    barrier = threading.Barrier(16)

    def spool(thread_number: int) -> None:
        barrier.wait(timeout=30)
        for n in range(thread_number, len(hits), 16):
            results[n] = hit_spool(hits[n])

    threads = [threading.Thread(target=spool, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == [True] * len(hits)
    assert spool_flush() == len(hits)
    assert sorted(buffered_keys()) == sorted(h.event_key for h in hits)
    with connection.cursor() as cursor:
        # Rows written by one transaction share its id (xmin): one per insert.
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM tracking_pendinghit")
        (inserts,) = cursor.fetchone()
    assert inserts == 1
    assert spool_flush() == 0  # nothing is read twice


def test_a_spooled_hit_is_in_its_file_for_any_process_to_read_before_any_flush(
    deliveries, spool_dir
):
    spooled = hit(deliveries[0])
    assert hit_spool(spooled)
    on_disk = b"".join(path.read_bytes() for path in spool_dir.glob(f"*{HITS_SUFFIX}"))
    assert str(spooled.event_key).encode() in on_disk
    assert buffered_keys() == []


def test_a_failing_database_keeps_the_hits_spooled_until_it_heals(deliveries, failing_database):
    spooled = [hit(delivery) for delivery in deliveries[:3]]
    assert all(hit_spool(one) for one in spooled)
    with pytest.raises(DatabaseError, match="disk on fire"):
        spool_flush()
    assert buffered_keys() == []
    failing_database()  # healed
    assert spool_flush() == 3
    assert sorted(buffered_keys()) == sorted(one.event_key for one in spooled)


def test_full_segments_are_replaced_and_removed_once_buffered(deliveries, settings, spool_dir):
    settings.TRACKING_SPOOL_SEGMENT_BYTES = 2000  # a few hits each
    hits = [hit(deliveries[n % 10]) for n in range(60)]
    assert all(hit_spool(one) for one in hits)
    assert len(list(spool_dir.glob(f"*{HITS_SUFFIX}"))) > 5
    assert spool_flush() == 60
    assert sorted(buffered_keys()) == sorted(one.event_key for one in hits)
    # Only the segment still being appended to is left.
    assert len(list(spool_dir.glob(f"*{HITS_SUFFIX}"))) == 1


def test_the_spool_of_a_killed_process_is_adopted_once(deliveries, spool_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DATABASE_URL=_database_url(),
        TRACKING_SPOOL_DIR=str(spool_dir),
        TRACKING_SPOOL_FLUSH_SECONDS="3600",  # it never flushes: all it spools is lost...
        PYTHONUNBUFFERED="1",
    )
    ids = ",".join(str(delivery.pk) for delivery in deliveries)
    code = (
        "import django; django.setup()\n"
        "import sys, time\n"
        "from tests.tracking.test_ingest import hit\n"
        "from tracking.spool import hit_spool\n"
        f"assert all(hit_spool(hit(int(i))) for i in '{ids}'.split(',') * 5)\n"
        "print('spooled', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "spooled"
        assert spools_adopt(spool_dir) == 0  # ...unless its process dies: it lives
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert spools_adopt(spool_dir) == 50
    assert PendingHit.objects.count() == 50
    assert list(spool_dir.iterdir()) == []
    assert spools_adopt(spool_dir) == 0


def test_adopters_running_at_once_take_each_hit_once(deliveries, spool_dir):
    expected = []
    for spool_number in range(6):
        segments = []
        for _ in range(3):
            hits = [hit(delivery) for delivery in deliveries]
            expected += [one.event_key for one in hits]
            segments.append(b"".join(hit_line(one) for one in hits))
        dead_spool_make(spool_dir, f"dead{spool_number}", segments)
    adopted = []

    def adopt() -> None:
        try:
            adopted.append(spools_adopt(spool_dir))
        finally:
            connection.close()

    threads = [threading.Thread(target=adopt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(adopted) == len(expected)
    assert sorted(buffered_keys()) == sorted(expected)
    assert list(spool_dir.iterdir()) == []


def test_damaged_lines_cost_only_themselves(deliveries, spool_dir, caplog):
    good = [hit(delivery) for delivery in deliveries[:3]]
    odd_address = hit(deliveries[3])
    data = (
        hit_line(good[0])
        + b'{"kind": "open", "delivery_id": \n'  # cut, then written over
        + hit_line(good[1])
        + hit_line(odd_address).replace(b"198.51.100.23", b"999.1.2.3")
        + b"\xff\xfe not a hit at all\n"
        + hit_line(good[2])
        + hit_line(hit(deliveries[4]))[:40]  # the process died while copying it
        + b"\0" * 500  # the segment's unwritten end
    )
    dead_spool_make(spool_dir, "damaged", [data])
    with caplog.at_level(logging.ERROR, logger="tracking.spool"):
        assert spools_adopt(spool_dir) >= 4
    stored = dict(PendingHit.objects.values_list("event_key", "ip"))
    assert set(stored) == {one.event_key for one in [*good, odd_address]}
    assert stored[odd_address.event_key] is None  # an address that is none is dropped
    assert caplog.text.count("Unreadable line") == 2


def test_a_forked_process_spools_into_a_spool_of_its_own(deliveries, spool_dir):
    assert hit_spool(hit(deliveries[0]))  # the parent's spool is open
    from_child = hit(deliveries[1])
    pid = os.fork()
    if pid == 0:  # the child: its lock, segments and flusher are its own
        code = 1
        try:
            code = 0 if hit_spool(from_child) else 2
            spool_stop(timeout=10)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert buffered_keys() == [from_child.event_key]  # the child flushed when it stopped
    assert len(list(spool_dir.glob(f"*{LOCK_SUFFIX}"))) == 1  # the child's is gone
    assert spool_flush() == 1  # and the parent's still works


def test_the_flusher_buffers_on_its_own_and_a_stop_leaves_nothing_behind(
    deliveries, settings, spool_dir
):
    settings.TRACKING_SPOOL_FLUSH_SECONDS = 0.05
    spooled = hit(deliveries[0])
    assert hit_spool(spooled)
    deadline = time.monotonic() + 10
    while not buffered_keys() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert buffered_keys() == [spooled.event_key]
    spool_stop(timeout=30)
    assert list(spool_dir.iterdir()) == []
