"""An answered open or click is a stored one, whatever happens to the web process or Redis.

The real production stack answers a burst of pixel and link requests: gunicorn with
espsite/gunicorn.conf.py (gthread workers, each answering once a hit is in the node's
spool, with a flusher per process: tracking/spool.py) on this test's database. Each
request is for a delivery of its own, so every answer maps to one expected event.

- The buffer's table is locked, so that both workers' flushers hold hits they cannot
  commit, and answers keep coming meanwhile; a worker is SIGKILLed with answered hits
  that only its spool holds (a request in flight gets no answer and may or may not be
  stored); a living worker adopts the spool; every 200 / 302 has its event exactly
  once (once the drain has run), none twice.
- Redis is stopped in the middle of the burst and started again (empty): the requests
  answered meanwhile, and all the others, are stored; the tracking path never needs it.
- The drain (the worker that makes events of the buffered hits) is SIGKILLed with its
  batch written and not committed: every hit is still buffered, and the next drain
  stores each exactly once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from contacts.models import Contact
from sending import links
from sending.models import Delivery
from tests.conftest import redis_test_url
from tests.factories import WorkspaceFactory
from tests.sending.crash.harness import RedisServer, free_port, wait_for
from tests.tracking.test_ingest import campaign_make
from tracking.ingest import Hit, hits_buffer, pending_hits_drain_all
from tracking.models import Event, PendingHit

pytestmark = [
    pytest.mark.serial,
    pytest.mark.timeout(90),
    pytest.mark.django_db(transaction=True),
]

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "espsite" / "gunicorn.conf.py"
WORKERS = 2
REQUESTS = 400  # half pixels, half links
CLIENTS = 32
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


# --- the web node -------------------------------------------------------------------------


def _database_url() -> str:
    database = connection.settings_dict
    return (
        f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


def _children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (the master's workers)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(stat.parent.name))
    return found


@dataclass
class WebNode:
    """gunicorn serving espsite.wsgi on a loopback port, as a web node runs it."""

    process: subprocess.Popen
    port: int
    log: Path
    spool: Path

    def stop(self) -> None:
        """SIGTERM, as a deploy does: requests finish, each worker flushes its spool."""
        self.process.terminate()
        self.process.wait(timeout=40)

    def workers(self) -> set[int]:
        return _children(self.process.pid)

    def get(self, path: str) -> int | None:
        """The answer's status; None when the connection broke before an answer came."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers={"User-Agent": BROWSER, "Connection": "close"})
            response = conn.getresponse()
            response.read()
            return response.status
        except (ConnectionError, http.client.HTTPException, TimeoutError):
            return None
        finally:
            conn.close()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
def web_node(tmp_path) -> Iterator[Callable[..., WebNode]]:
    """Start gunicorn with the production config (the flags it sets, should it be missing)
    on the test database; stopped, and its connections gone, at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(*, redis_url: str) -> WebNode:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update(
            DATABASE_URL=_database_url(),
            REDIS_URL=redis_url,
            CELERY_BROKER_URL=redis_url,
            CELERY_RESULT_BACKEND=redis_url,
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_WORKERS=str(WORKERS),
            GUNICORN_THREADS="8",
            PYTHONUNBUFFERED="1",
            TRACKING_SPOOL_DIR=str(tmp_path / "spool"),
            # A dead worker's spool is adopted within a second, not the default five.
            TRACKING_SPOOL_ADOPT_SECONDS="1",
        )
        argv = [sys.executable, "-m", "gunicorn"]
        if GUNICORN_CONF.exists():
            argv += ["-c", str(GUNICORN_CONF)]
        else:
            argv += ["--worker-class", "gthread", "--threads", "8", "--workers", str(WORKERS)]
        argv += ["--bind", f"127.0.0.1:{port}", "espsite.wsgi"]
        log = tmp_path / f"gunicorn-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
            )
        started.append(process)
        node = WebNode(process=process, port=port, log=log, spool=tmp_path / "spool")
        try:
            wait_for(lambda: len(node.workers()) == WORKERS, timeout=20, what="gunicorn workers")
            # Both workers load Django on their first requests: a forged pixel is answered
            # without the database, so a few concurrent ones warm every worker.
            for _ in range(3):
                with ThreadPoolExecutor(CLIENTS) as pool:
                    statuses = list(pool.map(node.get, ["/o/warm-up.gif"] * CLIENTS))
                if statuses == [200] * CLIENTS:
                    break
                time.sleep(1)
            else:
                raise AssertionError(f"gunicorn does not answer:\n{node.log_tail()}")
        except Exception:
            print(node.log_tail())
            raise
        return node

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()  # the master stops its workers (graceful_timeout)
        for process in started:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE tracking_event")


# --- the burst ----------------------------------------------------------------------------


@dataclass
class Request:
    delivery_id: int
    path: str
    expected: int  # 200 for the pixel, 302 for a link
    status: int | None = None
    answered_at: float = 0.0  # time.monotonic() of the answer


@dataclass
class Burst:
    requests: list[Request]
    answered: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self, since: float = 0.0) -> list[Request]:
        with self.lock:
            return [r for r in self.answered if r.status == r.expected and r.answered_at > since]

    def run(self, node: WebNode, *, pause: float = 0.0) -> threading.Thread:
        """Fire every request from CLIENTS threads, in the background; each client waits
        `pause` seconds before each of its requests (a burst that lasts)."""

        def one(request: Request) -> None:
            time.sleep(pause)
            request.status = node.get(request.path)
            request.answered_at = time.monotonic()
            with self.lock:
                self.answered.append(request)

        def all_of_them() -> None:
            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(one, self.requests))

        thread = threading.Thread(target=all_of_them, name="burst")
        thread.start()
        return thread


@pytest.fixture
def burst() -> Burst:
    """REQUESTS sent deliveries, each asked for once: its pixel, or one of its links."""
    workspace = WorkspaceFactory()
    campaign = campaign_make(workspace)
    contacts = Contact.objects.bulk_create(
        Contact(workspace=workspace, email=f"reader{n}@durable.test") for n in range(REQUESTS)
    )
    sent_at = timezone.now() - dt.timedelta(hours=1)
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=campaign,
            contact=contact,
            address=contact.email,
            state=Delivery.State.SENT,
            provider="other",
            sent_at=sent_at,
        )
        for contact in contacts
    )
    requests = []
    for n, delivery in enumerate(deliveries):
        if n % 2:
            url = f"https://shop.example/item/{delivery.pk}"
            token = links.click_token(delivery_id=delivery.pk, url=url)
            requests.append(Request(delivery.pk, links.CLICK_PATH.format(token=token), 302))
        else:
            token = links.open_token(delivery_id=delivery.pk)
            requests.append(Request(delivery.pk, links.OPEN_PATH.format(token=token), 200))
    return Burst(requests)


def _stored_per_delivery(burst: Burst) -> Counter:
    """Events per delivery, once the drain has stored what the flushers buffered."""
    pending_hits_drain_all()
    ids = [request.delivery_id for request in burst.requests]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT delivery_id, count(*) FROM tracking_event WHERE delivery_id = ANY(%s) "
            "GROUP BY delivery_id",
            [ids],
        )
        return Counter(dict(cursor.fetchall()))


def _assert_answers_are_stored(burst: Burst) -> None:
    stored = _stored_per_delivery(burst)
    acknowledged = [r for r in burst.requests if r.status == r.expected]
    lost = [r.delivery_id for r in acknowledged if stored[r.delivery_id] != 1]
    assert lost == [], "answered but not stored exactly once"
    twice = [delivery_id for delivery_id, count in stored.items() if count > 1]
    assert twice == []
    unexpected = {r.status for r in burst.requests} - {200, 302, None}
    assert unexpected == set()


@contextlib.contextmanager
def _table_locked(table: str) -> Iterator[psycopg.Connection]:
    """Hold a table exclusively: a batch that writes to it waits, not committed (the
    flushers' hits still spooled; the drain's still buffered)."""
    with psycopg.connect(_database_url(), autocommit=False) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            conn.rollback()


def _waiting_on(table: str) -> int:
    with psycopg.connect(_database_url(), autocommit=True) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
            [table],
        ).fetchone()
    return count


def _wait_for_answers(burst: Burst, count: int, *, since: float = 0.0) -> None:
    """Polled often: the burst must still be running when the fault comes."""
    wait_for(
        lambda: len(burst.acknowledged(since=since)) >= count,
        timeout=30,
        what=f"{count} answers",
        interval=0.01,
    )


# --- the tests ----------------------------------------------------------------------------


def test_a_worker_killed_with_hits_in_its_spool_loses_no_answered_event(web_node, burst):
    node = web_node(redis_url=redis_test_url())
    # Paced to last a few seconds: both workers must still be getting requests when the
    # buffer is locked, or one flusher has nothing to block on.
    thread = burst.run(node, pause=0.2)
    _wait_for_answers(burst, REQUESTS // 4)
    with _table_locked("tracking_pendinghit"):
        locked_at = time.monotonic()
        # Each worker's flusher has a batch in the database, blocked before its commit.
        wait_for(
            lambda: _waiting_on("tracking_pendinghit") >= WORKERS,
            timeout=15,
            what="both flushers waiting",
        )
        # Answers do not wait for the database: the spool has them.
        _wait_for_answers(burst, 10, since=locked_at)
        victim = min(node.workers())
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in node.workers(), timeout=10, what="the worker gone")
        killed_at = time.monotonic()
        time.sleep(0.3)
    thread.join(timeout=60)
    assert not thread.is_alive(), node.log_tail()
    wait_for(
        lambda: "Adopted the tracking spool" in node.log.read_text(errors="replace"),
        timeout=20,
        what="the dead worker's spool adopted",
    )
    log = node.log.read_text(errors="replace")
    # The master replaced the worker.
    wait_for(lambda: len(node.workers()) == WORKERS, timeout=20, what="a new worker")
    assert victim not in node.workers()
    node.stop()

    assert len(burst.answered) == REQUESTS
    _assert_answers_are_stored(burst)
    # The victim died with answered hits that only its spool held.
    adopted = re.findall(r"Adopted the tracking spool \w+ of a process gone: (\d+) hits", log)
    assert max(map(int, adopted), default=0) > 0
    assert burst.acknowledged(since=killed_at), "nothing was answered after the kill"
    assert list(node.spool.iterdir()) == [], "a spool left behind"


def test_a_redis_restart_mid_burst_loses_no_answered_event(web_node, burst, tmp_path):
    redis = RedisServer(root=tmp_path, port=free_port()).start()
    try:
        node = web_node(redis_url=redis.url())
        # Paced to last a few seconds: answered as fast as they come, the requests could
        # all be done before Redis is down.
        thread = burst.run(node, pause=0.2)
        _wait_for_answers(burst, REQUESTS // 4)
        redis.stop()
        stopped_at = time.monotonic()
        # Answers keep coming with Redis down: the pixel and links never use it.
        _wait_for_answers(burst, REQUESTS // 4, since=stopped_at)
        redis.start()  # empty: nothing was kept
        thread.join(timeout=60)
        assert not thread.is_alive(), node.log_tail()
        node.stop()
    finally:
        redis.stop()

    assert [r for r in burst.requests if r.status != r.expected] == []
    _assert_answers_are_stored(burst)
    assert sum(_stored_per_delivery(burst).values()) == REQUESTS


def test_a_drain_killed_before_its_commit_loses_and_duplicates_nothing(burst):
    deliveries = [request.delivery_id for request in burst.requests[:50]]
    hits_buffer(
        [
            Hit(
                kind="open",
                delivery_id=delivery_id,
                url="",
                occurred_at=timezone.now(),
                ip="198.51.100.23",
                user_agent=BROWSER,
                method="GET",
                event_key=uuid.uuid4(),
            )
            for delivery_id in deliveries
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(DATABASE_URL=_database_url(), PYTHONUNBUFFERED="1")
    code = (
        "import django; django.setup(); "
        "from tracking.ingest import pending_hits_drain; pending_hits_drain()"
    )
    with _table_locked("tracking_deliveryactivity"):
        drain = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
        try:
            # Its batch is taken (deleted from the buffer) and its events inserted, in a
            # transaction blocked before the counters, and so before its commit.
            wait_for(
                lambda: _waiting_on("tracking_deliveryactivity") >= 1,
                timeout=30,
                what="the drain waiting",
            )
            drain.send_signal(signal.SIGKILL)
            drain.wait(timeout=10)
        finally:
            if drain.poll() is None:
                drain.kill()
    assert PendingHit.objects.filter(delivery_id__in=deliveries).count() == len(deliveries)
    assert not Event.objects.filter(delivery_id__in=deliveries).exists()

    assert pending_hits_drain_all() == (len(deliveries), len(deliveries))
    stored = Counter(
        Event.objects.filter(delivery_id__in=deliveries).values_list("delivery_id", flat=True)
    )
    assert stored == Counter(deliveries)
    assert not PendingHit.objects.exists()
