"""Group commit of tracking hits: one writer thread per process, one INSERT per batch.

A request to the pixel or a link hands its hit to `hit_record`, which queues it and waits
until the writer thread has committed the batch holding it to the buffer
(`tracking.ingest.hits_buffer`; the drain makes events of it later). The writer waits
TRACKING_WRITE_LINGER_SECONDS after the first hit of a batch, or until
TRACKING_WRITE_LINGER_HITS are queued, takes everything queued, writes it in one
statement and wakes the waiters; what queued meanwhile is the next batch. So under load a
batch grows with the number of requests waiting, and the database sees one statement and
one commit per batch, not per hit.

`hit_write` also tells whether the hit's delivery exists (the INSERT keeps only the hits
of existing deliveries), so a click on a deleted delivery's link is refused without a
query of the request's own.

The thread starts with the first hit, and again in a forked child (a thread does not
survive fork: gunicorn workers forked from a preloaded master start their own). A hit
whose batch fails, or that waits longer than TRACKING_WRITE_TIMEOUT_SECONDS, is reported
not stored and logged; the endpoint answers anyway. Hits are idempotent (event_key), so
the one retry after a lost connection cannot count anything twice (the drain stores an
event_key once).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
)

from tracking.ingest import Hit, hits_buffer

logger = logging.getLogger(__name__)

BATCH_MAX = 1000
# Past this many hits waiting (the database stalled), new hits are refused at once.
QUEUE_MAX = 20_000
# The writer's connection is checked (broken, past its age) this often, not every batch:
# with health checks on, each check costs a round trip that a busy writer cannot spare.
CONNECTION_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class HitOutcome:
    is_stored: bool  # its batch was committed
    is_delivery_known: bool | None  # the delivery exists; None when not stored


class _Pending:
    __slots__ = ("_done", "hit", "is_delivery_known", "is_stored")

    def __init__(self, hit: Hit) -> None:
        self.hit = hit
        # Held until the writer is done with the hit: a bare lock is the cheapest thing a
        # thread can wait on (an Event is a lock and a Condition per request).
        self._done = threading.Lock()
        self._done.acquire()
        self.is_stored = False
        self.is_delivery_known: bool | None = None

    def finish(self) -> None:
        self._done.release()

    def wait(self, timeout: float) -> bool:
        return self._done.acquire(timeout=timeout)


class HitWriter:
    """The queue and the thread that drains it in batches."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._queue: deque[_Pending] = deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._is_stopping = False
        self._checked_at = 0.0

    def put(self, pending: _Pending) -> bool:
        with self._wakeup:
            if self._is_stopping or len(self._queue) >= QUEUE_MAX:
                return False
            self._queue.append(pending)
            if 1 < len(self._queue) < settings.TRACKING_WRITE_LINGER_HITS:
                return True  # the writer is lingering or writing: no need to wake it
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tracking-writer", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Write what is queued, then end the thread (and its database connection)."""
        with self._wakeup:
            self._is_stopping = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        try:
            while True:
                with self._wakeup:
                    while not self._queue and not self._is_stopping:
                        self._wakeup.wait()
                    if not self._queue:
                        return
                    self._linger()
                    size = min(len(self._queue), BATCH_MAX)
                    batch = [self._queue.popleft() for _ in range(size)]
                self._write(batch)
        finally:
            connection.close()

    def _linger(self) -> None:
        """Under the lock: wait a moment for more hits to join the batch."""
        deadline = time.monotonic() + settings.TRACKING_WRITE_LINGER_SECONDS
        while len(self._queue) < settings.TRACKING_WRITE_LINGER_HITS and not self._is_stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wakeup.wait(left)

    def _write(self, batch: list[_Pending]) -> None:
        if time.monotonic() - self._checked_at > CONNECTION_CHECK_SECONDS:
            close_old_connections()  # a connection broken or past its age is replaced
            self._checked_at = time.monotonic()
        known = None
        for attempt in (1, 2):
            try:
                known = hits_buffer([pending.hit for pending in batch])
                break
            except Exception as error:  # whatever it is, the waiters must be woken
                if attempt == 1 and isinstance(error, (OperationalError, InterfaceError)):
                    # The connection died between checks: once more on a new one (event
                    # keys make a batch written twice count once).
                    connection.close()
                    continue
                logger.exception("Tracking batch of %d hits not stored", len(batch))
                break
        for pending in batch:
            if known is not None:
                pending.is_stored = True
                pending.is_delivery_known = pending.hit.delivery_id in known
            pending.finish()


_writer: HitWriter | None = None
_writer_lock = threading.Lock()


def _writer_get() -> HitWriter:
    global _writer
    writer = _writer
    if writer is not None and writer.pid == os.getpid():
        return writer
    with _writer_lock:
        if _writer is None or _writer.pid != os.getpid():
            _writer = HitWriter()
        return _writer


def _after_fork_in_child() -> None:
    global _writer, _writer_lock
    _writer = None
    _writer_lock = threading.Lock()  # the parent's may have been held at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def hit_write(hit: Hit) -> HitOutcome:
    """Queue the hit and wait for its batch: stored once committed; not stored when it
    failed or took longer than TRACKING_WRITE_TIMEOUT_SECONDS (logged)."""
    pending = _Pending(hit)
    if not _writer_get().put(pending):
        logger.error("Tracking hit of delivery %s refused: writer queue full", hit.delivery_id)
        return HitOutcome(False, None)
    if not pending.wait(settings.TRACKING_WRITE_TIMEOUT_SECONDS):
        logger.error(
            "Tracking hit of delivery %s not written within %s s",
            hit.delivery_id,
            settings.TRACKING_WRITE_TIMEOUT_SECONDS,
        )
        return HitOutcome(False, None)
    if not pending.is_stored:
        logger.error("Tracking hit of delivery %s not stored", hit.delivery_id)
    return HitOutcome(pending.is_stored, pending.is_delivery_known)


def hit_record(hit: Hit) -> bool:
    """Queue the hit and wait for its batch: True once committed, False when it failed
    or took longer than TRACKING_WRITE_TIMEOUT_SECONDS (logged)."""
    return hit_write(hit).is_stored


def writer_stop(timeout: float | None = None) -> None:
    """Flush and stop this process's writer (at exit; tests, before the database goes)."""
    global _writer
    with _writer_lock:
        writer, _writer = _writer, None
    if writer is not None and writer.pid == os.getpid():
        writer.stop(timeout)


atexit.register(writer_stop, 5.0)
