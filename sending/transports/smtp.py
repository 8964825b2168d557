"""The `smtp` transport: everything relayed through one smarthost, over the shared client
of sending/transports/session.py.

It keeps up to SENDING_SMTP_CONNECTIONS sessions to the smarthost and works a batch off
through all of them. Security is SENDING_SMTP_SECURITY: `none`, `starttls` (required: a
relay that does not offer it is a configuration error) or `tls` (implicit TLS, port 465
style). Certificates are verified against the system's trust store, or only against
SENDING_SMTP_CA_FILE when that names a PEM file (a private CA, or the self-signed
certificate of a test sink). Refused credentials are a configuration error: `send_many`
raises TransportConfigError when nothing of the call was handed over yet, and otherwise
defers the rest with the reason, so that no result of a message that may have left is
ever lost.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from sending.transports.base import Envelope, Result, TransportConfigError
from sending.transports.session import (
    ConnectFailed,
    Job,
    LoopThread,
    SmtpSession,
    default_helo,
    job_defer,
    job_run,
    jobs_build,
    local_result,
)


@dataclass
class _Batch:
    queue: deque[Job]
    results: list[Result | None]
    workers: int
    failure: str = ""
    config_error: TransportConfigError | None = None


class SmtpTransport:
    """Relay through one smarthost over a few persistent connections."""

    name = "smtp"
    SECURITY = ("none", "starttls", "tls")

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = "none",
        username: str = "",
        password: str = "",
        timeout: float = 30,
        connections: int = 4,
        ca_file: str = "",
        helo: str = "",
    ) -> None:
        if security not in self.SECURITY:
            raise TransportConfigError(
                f"SENDING_SMTP_SECURITY is {security!r}; use one of {', '.join(self.SECURITY)}."
            )
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.timeout = float(timeout)
        self.connections = max(1, int(connections))
        self.ca_file = ca_file
        self.helo = helo or default_helo()
        self.connections_opened = 0
        self._thread: LoopThread | None = None
        self._lock = threading.Lock()
        self._idle: list[SmtpSession] = []
        self._slots: asyncio.Semaphore | None = None
        self._ssl_context: ssl.SSLContext | None = None

    @classmethod
    def settings_options(cls) -> dict[str, Any]:
        return {
            "host": settings.SENDING_SMTP_HOST,
            "port": settings.SENDING_SMTP_PORT,
            "security": settings.SENDING_SMTP_SECURITY,
            "username": settings.SENDING_SMTP_USERNAME,
            "password": settings.SENDING_SMTP_PASSWORD,
            "timeout": settings.SENDING_SMTP_TIMEOUT_SECONDS,
            "connections": settings.SENDING_SMTP_CONNECTIONS,
            "ca_file": settings.SENDING_SMTP_CA_FILE,
        }

    # -- the interface --

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Result]:
        if not envelopes:
            return []
        return self._loop().run(self._send_many(list(envelopes)))

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(self._close_idle())
        self._idle, self._slots = [], None

    # -- inside the loop --

    def _loop(self) -> LoopThread:
        with self._lock:
            if self._thread is None or not self._thread.is_alive:
                # A new process (fork) or after close(): the old loop's sessions are not ours.
                self._thread = LoopThread(f"smtp-relay-{self.host}:{self.port}")
                self._idle, self._slots = [], None
            return self._thread

    async def _send_many(self, envelopes: list[Envelope]) -> list[Result]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.connections)
        results: list[Result | None] = [None] * len(envelopes)
        jobs = jobs_build(envelopes, range(len(envelopes)), results)
        batch = _Batch(deque(jobs), results, workers=min(self.connections, len(jobs)))
        workers = [self._worker(batch, self._slots) for _ in range(batch.workers)]
        await asyncio.gather(*workers)
        for index, result in enumerate(results):
            if result is None:  # a safety net: every envelope gets an answer
                results[index] = local_result(envelopes[index], "deferred", "Not attempted.")
        if batch.config_error is not None and not any(job.handed_over for job in jobs):
            raise batch.config_error
        return results  # type: ignore[return-value]

    async def _worker(self, batch: _Batch, slots: asyncio.Semaphore) -> None:
        async with slots:
            session: SmtpSession | None = None
            try:
                while batch.queue:
                    job = batch.queue.popleft()
                    if batch.failure:
                        job_defer(job, batch.results, batch.failure)
                        continue
                    session = await self._job_run(job, session, batch)
            except _WorkerRetired:
                pass
            finally:
                # No await in here: the count stays exact for the other workers' checks.
                batch.workers -= 1
                if session is not None and session.is_usable:
                    session.idle_since = time.monotonic()
                    self._idle.append(session)

    async def _job_run(self, job: Job, session: SmtpSession | None, batch: _Batch):
        """Run one job (see job_run); the session to go on with."""
        try:
            return await job_run(job, session, batch.results, self._session)
        except TransportConfigError as error:
            batch.config_error, batch.failure = error, f"Relay configuration: {error}"
            job_defer(job, batch.results, batch.failure, "4.3.5")
        except ConnectFailed as error:
            text = f"Relay {self.host}:{self.port} unavailable: {error}"
            if error.reply is not None:
                text = f"Relay {self.host}:{self.port} refused the session: {error.reply}"
            if batch.workers > 1:
                # Other connections may be fine (a relay that caps its sessions): leave
                # the job to them and retire this worker.
                batch.queue.appendleft(job)
                raise _WorkerRetired from None
            batch.failure = text
            job_defer(job, batch.results, text)
        return None

    async def _session(self) -> SmtpSession:
        while self._idle:
            session = self._idle.pop()
            if session.is_usable and not session.reader.at_eof():
                return session
            session.abort()
        if self.security != "none" and self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.ca_file or None)
        self.connections_opened += 1
        return await SmtpSession.open(
            host=self.host,
            port=self.port,
            helo=self.helo,
            timeout=self.timeout,
            security=self.security,
            ssl_context=self._ssl_context,
            username=self.username,
            password=self.password,
        )

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(session.quit() for session in idle))


class _WorkerRetired(Exception):
    """A worker whose connection failed gives its job back and stops."""
