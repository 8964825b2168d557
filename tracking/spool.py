"""The spool of tracking hits: where a pixel or link request leaves its hit before it is
answered, as a mail server queues a message before it says 250.

Each request thread appends its hit, one JSON line, to a segment file of its own under
TRACKING_SPOOL_DIR (one write call, no lock, no wait for any other thread or for the
database). From then on the hit is the kernel's: a process killed, crashed or restarted
loses nothing it answered, and neither does a Redis or PostgreSQL restart. Every
TRACKING_SPOOL_FLUSH_SECONDS a flusher thread per process reads what its threads
appended and buffers it in PostgreSQL (`tracking.ingest.hits_buffer`: one INSERT per
batch, PendingHit); the drain makes events of it. Only an operating system crash within
that moment, before the flush commits, can lose an answered hit, as with PostgreSQL's
own synchronous_commit = off.

A process holds an exclusive flock on its spool's lock file for as long as it lives. The
kernel releases it when the process dies however it dies, so a lock file that can be
locked names a dead process's spool: the flushers adopt such spools (every
TRACKING_SPOOL_ADOPT_SECONDS, and when they start), buffer their hits and delete them.

A hit read twice (a flush that committed and then failed to note it, an adopter killed
mid-way) is buffered twice and stored once: its event_key identifies it (the drain stores
an event_key once).

Layout of TRACKING_SPOOL_DIR, which must be a local, persistent directory shared by the
node's web processes:

    <spool>.lock            held by the living process <spool>
    <spool>-<n>.hits        a segment: one thread's hits, one JSON line each
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import json
import logging
import mmap
import os
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DataError, close_old_connections, connection

from tracking.ingest import Hit, hit_row_json, hits_buffer, rows_buffer

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
HITS_SUFFIX = ".hits"
# Hits per INSERT when a flush or an adoption finds many.
BUFFER_BATCH = 5000
# A failing flush is logged at once and then at most this often while it keeps failing.
FAILURE_LOG_SECONDS = 60.0
# The flusher's connection is checked (broken, past its age) this often.
CONNECTION_CHECK_SECONDS = 5.0


def hit_line(hit: Hit) -> bytes:
    """The hit as the buffer's row (`hit_row_json`), on a line of its own."""
    return (hit_row_json(hit) + "\n").encode()


def _hit_read(line: bytes, path: Path) -> Hit | None:
    try:
        row = json.loads(line)
        return Hit(
            kind=str(row["kind"]),
            delivery_id=int(row["delivery_id"]),
            url=str(row["url"]),
            occurred_at=datetime.fromisoformat(row["occurred_at"]),
            ip=row["ip"],
            user_agent=str(row["user_agent"]),
            method=str(row["method"]),
            event_key=uuid.UUID(row["event_key"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        logger.error("Unreadable line in tracking spool %s skipped: %r", path, line[:200])
        return None


def _lines_buffer(data: bytes, path: Path) -> None:
    """Buffer the spooled lines in `data` (whole lines), BUFFER_BATCH per INSERT, handed
    to PostgreSQL as they are; a batch PostgreSQL refuses as data (a damaged file) is
    read line by line, and what is not a hit is logged and left out."""
    lines = data.splitlines()
    for start in range(0, len(lines), BUFFER_BATCH):
        batch = lines[start : start + BUFFER_BATCH]
        try:
            rows_buffer((b"[" + b",".join(batch) + b"]").decode(errors="replace"))
        except DataError:
            hits = [hit for hit in (_hit_read(line, path) for line in batch) if hit]
            for hit in hits:
                try:
                    hits_buffer([hit])
                except DataError:
                    logger.error("Spooled hit %s refused by the database", hit.event_key)


def _complete(data: bytes) -> bytes:
    """The whole lines of `data` (a line being appended is read when it is whole)."""
    return data[: data.rfind(b"\n") + 1]


def _written(data: bytes) -> bytes:
    """The whole lines in a segment file: its unwritten end is zeros (JSON escapes NUL),
    and a line being copied when its process was killed has no newline yet, or zeros."""
    return _complete(data.partition(b"\0")[0])


class _Segment:
    """One thread's file, mapped into memory: only that thread appends to it, copying a
    line into the mapping (no system call, and the GIL is not let go on the way); the
    flusher reads from the same mapping. The pages are the file's, in the kernel's page
    cache: they outlive the process whatever ends it. The file's blocks are allocated when
    it is made, so that a full disk is an error there rather than a crash later."""

    __slots__ = ("is_sealed", "map", "path", "read_to", "size")

    def __init__(self, path: Path, length: int) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.posix_fallocate(fd, 0, length)
            self.map = mmap.mmap(fd, length)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        self.size = 0  # appended, by its thread; always the end of a whole line
        self.read_to = 0  # buffered, by the flusher
        self.is_sealed = False  # its thread appends no more

    def append(self, line: bytes) -> bool:
        end = self.size + len(line)
        if end > len(self.map):
            return False
        self.map[self.size : end] = line
        self.size = end
        return True

    def unread(self) -> bytes:
        return self.map[self.read_to : self.size]


class Spool:
    """This process's spool: its lock, its threads' segments and the flusher thread."""

    def __init__(self, directory: Path) -> None:
        self.pid = os.getpid()
        self.directory = directory
        self.name = uuid.uuid4().hex
        directory.mkdir(parents=True, exist_ok=True)
        # Locked before it gets the name adopters look for: an adopter never finds this
        # lock free while the process lives.
        making = directory / f".{self.name}{LOCK_SUFFIX}.new"
        self._lock_fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(making, self.lock_path)
        self._local = threading.local()
        self._numbers = itertools.count()
        self._segments: list[_Segment] = []
        self._segments_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._is_stopping = False
        self._failing_logged_at: float | None = None
        self._checked_at = 0.0
        self._thread: threading.Thread | None = None
        self._is_flushed_at_stop = False

    @property
    def lock_path(self) -> Path:
        return self.directory / f"{self.name}{LOCK_SUFFIX}"

    def append(self, hit: Hit) -> bool:
        """Append the hit to this thread's segment: True once the kernel has it."""
        if self._is_stopping:
            return hit_spool(hit)  # stopped meanwhile: the next spool takes it
        line = hit_line(hit)
        segment = getattr(self._local, "segment", None)
        if segment is not None and segment.append(line):
            return True
        try:
            segment = self._segment_next(segment, len(line))
        except OSError:
            logger.exception("Tracking hit of delivery %s not spooled", hit.delivery_id)
            return False
        return segment.append(line)

    def _segment_next(self, old: _Segment | None, needed: int) -> _Segment:
        if old is not None:
            old.is_sealed = True
            self._local.segment = None
        path = self.directory / f"{self.name}-{next(self._numbers)}{HITS_SUFFIX}"
        segment = _Segment(path, max(settings.TRACKING_SPOOL_SEGMENT_BYTES, needed))
        with self._segments_lock:
            self._segments.append(segment)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tracking-spool", daemon=True
                )
                self._thread.start()
        self._local.segment = segment
        return segment

    def flush(self) -> int:
        """Buffer what this process's threads appended since the last flush; the number
        of hits. Raises when the database refuses them (they stay spooled)."""
        with self._flush_lock:
            with self._segments_lock:
                segments = list(self._segments)
            unread: list[bytes] = []
            progress = []
            for segment in segments:
                # Sealed before the read: what the read finds is all there will be.
                is_sealed = segment.is_sealed
                if not is_sealed and segment.size == segment.read_to:
                    continue
                data = segment.unread()
                unread.append(data)
                progress.append((segment, segment.read_to + len(data), is_sealed))
            data = b"".join(unread)
            if data:
                self._connection_check()
                _lines_buffer(data, self.directory / self.name)
            for segment, read_to, is_sealed in progress:
                segment.read_to = read_to
                if is_sealed:
                    self._segment_remove(segment)
            return data.count(b"\n")

    def _segment_remove(self, segment: _Segment) -> None:
        segment.map.close()
        segment.path.unlink(missing_ok=True)
        with self._segments_lock:
            self._segments.remove(segment)

    def _connection_check(self) -> None:
        if time.monotonic() - self._checked_at > CONNECTION_CHECK_SECONDS:
            close_old_connections()  # a connection broken or past its age is replaced
            self._checked_at = time.monotonic()

    def _run(self) -> None:
        """The flusher. All of the spool's database work is done on this thread, with its
        own connection (a forked child must not use the connection it inherited)."""
        adopted_at = 0.0
        try:
            while True:
                self._wakeup.wait(settings.TRACKING_SPOOL_FLUSH_SECONDS)
                if self._is_stopping:
                    break
                self._flush_logged()
                if time.monotonic() - adopted_at > settings.TRACKING_SPOOL_ADOPT_SECONDS:
                    adopted_at = time.monotonic()
                    self._adopt_logged()
            self._is_flushed_at_stop = self._flush_logged()
        finally:
            connection.close()

    def _flush_logged(self) -> bool:
        try:
            self.flush()
        except Exception:
            # Whatever it is, the hits stay spooled and the next flush tries again.
            connection.close()
            now = time.monotonic()
            if (
                self._failing_logged_at is None
                or now - self._failing_logged_at > FAILURE_LOG_SECONDS
            ):
                self._failing_logged_at = now
                logger.exception("Tracking spool %s not flushed; retrying", self.name)
            return False
        if self._failing_logged_at is not None:
            logger.warning("Tracking spool %s flushed again", self.name)
            self._failing_logged_at = None
        return True

    def _adopt_logged(self) -> None:
        try:
            spools_adopt(self.directory)
        except Exception:
            connection.close()
            logger.exception("Orphaned tracking spools in %s not adopted", self.directory)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the flusher after a last flush, and remove the spool if all of it was
        buffered (a spool left behind is adopted by another process)."""
        self._is_stopping = True
        self._wakeup.set()
        try:
            with self._segments_lock:
                thread = self._thread
            if thread is not None:
                thread.join(timeout)
                if thread.is_alive() or not self._is_flushed_at_stop:
                    return
            with self._segments_lock:
                segments = list(self._segments)
            for segment in segments:
                if segment.read_to == segment.size:
                    segment.is_sealed = True
                    self._segment_remove(segment)
            if not self._segments:
                self.lock_path.unlink(missing_ok=True)
        finally:
            os.close(self._lock_fd)  # another process may adopt what is left


def spools_adopt(directory: Path) -> int:
    """Buffer and delete the spools in `directory` whose process is gone; the number of
    hits. Adopters running at once take different spools (the lock file's flock)."""
    adopted = 0
    for lock_path in sorted(directory.glob(f"*{LOCK_SUFFIX}")):
        name = lock_path.name.removesuffix(LOCK_SUFFIX)
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # adopted meanwhile
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process lives (this process's own spool included)
            try:
                if os.stat(lock_path).st_ino != os.fstat(lock_fd).st_ino:
                    continue  # adopted and removed between the open and the lock
            except FileNotFoundError:
                continue
            hits = 0
            for path in sorted(directory.glob(f"{name}-*{HITS_SUFFIX}"), key=_segment_number):
                data = _written(path.read_bytes())
                _lines_buffer(data, path)
                path.unlink()
                hits += data.count(b"\n")
            lock_path.unlink()
            adopted += hits
            logger.warning("Adopted the tracking spool %s of a process gone: %d hits", name, hits)
        finally:
            os.close(lock_fd)
    return adopted


def _segment_number(path: Path) -> int:
    return int(path.stem.rpartition("-")[2])


_spool: Spool | None = None
_spool_lock = threading.Lock()


def _spool_get() -> Spool:
    global _spool
    spool = _spool
    if spool is not None and spool.pid == os.getpid():
        return spool
    with _spool_lock:
        if _spool is None or _spool.pid != os.getpid():
            _spool = Spool(Path(settings.TRACKING_SPOOL_DIR))
        return _spool


def _after_fork_in_child() -> None:
    global _spool, _spool_lock
    _spool = None  # the parent's lock, segments and thread are the parent's
    _spool_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def hit_spool(hit: Hit) -> bool:
    """Spool the hit: True once it is the kernel's (it will be stored even if this
    process dies now); False when it could not be written (logged)."""
    try:
        spool = _spool_get()
    except OSError:
        logger.exception("Tracking spool %s unusable", settings.TRACKING_SPOOL_DIR)
        return False
    return spool.append(hit)


def spool_flush() -> int:
    """Buffer what this process spooled, now (tests; the flusher does it every
    TRACKING_SPOOL_FLUSH_SECONDS)."""
    spool = _spool
    if spool is None or spool.pid != os.getpid():
        return 0
    return spool.flush()


def spool_stop(timeout: float | None = None) -> None:
    """Flush and stop this process's spool (at exit; tests, before the database goes)."""
    global _spool
    with _spool_lock:
        spool, _spool = _spool, None
    if spool is not None and spool.pid == os.getpid():
        spool.stop(timeout)


atexit.register(spool_stop, 5.0)
