"""The `mx` transport: straight to each recipient's mail exchanger, as an MTA does.

Per batch: envelopes are grouped by recipient domain (and source address), each domain's
route is looked up once (MX through the app's DnsClient, then A/AAAA of each exchanger,
cached for MX_CACHE_SECONDS), and each destination gets a few sessions that work off its
messages one transaction after another. All sessions run on one asyncio loop thread
owned by the transport, at most SENDING_MX_CONCURRENCY at a time: a remote MX costs
20-100 ms a round trip, so throughput comes from hundreds of sessions in flight, not from
a fast one. PIPELINING is used when offered (sending/transports/smtp.py).

What an MTA does, done here:
- MX hosts by preference (equal preferences in random order); no MX but an address
  record: the domain itself (implicit MX, RFC 5321 5.1); a null MX ("0 .") or a domain
  that does not exist: bounced hard, nothing sent (RFC 7505).
- The next host when one does not answer or greets with an error; a host that failed is
  skipped for DEAD_HOST_SECONDS while another one answers.
- STARTTLS when offered, without verifying the certificate (opportunistic, RFC 7435: an
  MX's certificate rarely names it); a failed handshake is retried in plain text.
- The envelope's source address is bound; EHLO gives that SendingIp's helo_hostname.
- Sessions are kept per (source, MX address) between batches, for IDLE_SECONDS, so
  domains hosted on one MX share them; closed after MESSAGES_PER_SESSION messages.
  Idle sessions count against SENDING_MX_CONCURRENCY: the oldest make way.

SENDING_MX_LOOPBACK_ONLY (on by default) refuses, before any connection, every MX address
outside 127.0.0.0/8 and ::1: such deliveries are deferred with the reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dns.name
from django.conf import settings

from sending.resolver import DnsClient, Status
from sending.transports.base import Envelope, Result
from sending.transports.session import (
    AddressError,
    ConnectFailed,
    Job,
    LoopThread,
    SmtpSession,
    address_domain,
    default_helo,
    job_defer,
    job_run,
    jobs_build,
    local_result,
    wire_address,
)

MX_CACHE_SECONDS = 300  # a route (MX and addresses) is reused this long
NEGATIVE_CACHE_SECONDS = 60  # a domain that does not exist or takes no mail
IDLE_SECONDS = 30  # an idle session is kept this long for the next batch
MESSAGES_PER_SESSION = 100
JOBS_PER_SESSION = 20  # a destination gets one more session per this many transactions,
SESSIONS_PER_DESTINATION = 10  # up to this many in one batch
DEAD_HOST_SECONDS = 30
HELO_CACHE_SECONDS = 300

_random = secrets.SystemRandom()


@dataclass
class Route:
    """Where a domain's mail goes: MX names and their addresses by preference, or a
    verdict for every recipient (state, enhanced code, text, bounce class)."""

    domain: str
    hosts: list[tuple[str, list[str]]] = field(default_factory=list)
    verdict: tuple[str, str, str, str] | None = None
    expires_at: float = 0.0


def _addresses(client: DnsClient, host: str) -> tuple[list[str], str]:
    """The A and AAAA addresses of a host (IPv4 first), and what went wrong, if anything."""
    try:
        return [str(ipaddress.ip_address(host))], ""
    except ValueError:
        pass
    addresses, errors = [], []
    for rdtype in ("A", "AAAA"):
        lookup = client.lookup(host, rdtype)
        if lookup.ok:
            addresses += [record.address for record in lookup.records]
        elif not lookup.is_void:
            errors.append(f"{host} {rdtype}: {lookup.error or lookup.status}")
    return addresses, "; ".join(errors)


def route_resolve(client: DnsClient, domain: str) -> Route:
    """Look a domain's route up in DNS (blocking: runs on the transport's DNS threads)."""
    now = time.monotonic()
    mx = client.lookup(domain, "MX")
    if mx.status == Status.NXDOMAIN:
        text = f"The domain {domain} does not exist (NXDOMAIN)."
        return Route(domain, verdict=("bounced", "5.1.2", text, "hard"), expires_at=now + 60)
    if not (mx.ok or mx.status == Status.NODATA):
        text = f"DNS lookup of the MX of {domain} failed: {mx.error or mx.status}"
        return Route(domain, verdict=("deferred", "4.4.3", text, ""))
    implicit = not mx.ok
    if implicit:
        names = [domain]
    else:
        records = [r for r in mx.records if r.exchange != dns.name.root]
        if not records:
            text = f"{domain} accepts no mail: it publishes a null MX (RFC 7505)."
            verdict = ("bounced", "5.1.10", text, "hard")
            return Route(domain, verdict=verdict, expires_at=now + NEGATIVE_CACHE_SECONDS)
        _random.shuffle(records)  # equal preferences share the load (RFC 5321 5.1)
        records.sort(key=lambda record: record.preference)
        names = [r.exchange.to_text(omit_final_dot=True).lower() for r in records]
    hosts, errors = [], []
    for name in dict.fromkeys(names):
        addresses, error = _addresses(client, name)
        if addresses:
            hosts.append((name, addresses))
        elif error:
            errors.append(error)
    if hosts:
        return Route(domain, hosts=hosts, expires_at=now + MX_CACHE_SECONDS)
    if errors:
        text = f"DNS lookup of the mail hosts of {domain} failed: {'; '.join(errors)}"
        return Route(domain, verdict=("deferred", "4.4.3", text, ""))
    if implicit:
        text = f"{domain} has no MX record and no address to deliver to."
        verdict = ("bounced", "5.1.2", text, "hard")
        return Route(domain, verdict=verdict, expires_at=now + NEGATIVE_CACHE_SECONDS)
    text = f"No MX host of {domain} has an address ({', '.join(names)})."
    return Route(domain, verdict=("deferred", "4.4.4", text, ""))


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


class NoRoute(Exception):
    """No MX host of a destination gave a session."""


class MxTransport:
    """Direct delivery to the recipients' MX hosts; see the module docstring."""

    name = "mx"

    def __init__(
        self,
        *,
        port: int = 25,
        timeout: float = 60,
        concurrency: int = 100,
        loopback_only: bool = True,
        helo: str = "",
    ) -> None:
        self.port = port
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        self.loopback_only = loopback_only
        self.helo = helo or default_helo()
        self.connections_opened = 0
        self._thread: LoopThread | None = None
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._reset_loop_state()
        self._routes: dict[str, Route] = {}
        self._helos: dict[str, tuple[str, float]] = {}
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE  # opportunistic TLS, as MTAs do (RFC 7435)

    def _reset_loop_state(self) -> None:
        self._idle: dict[tuple[str, str], list[SmtpSession]] = {}
        self._dead: dict[str, float] = {}
        self._sessions: asyncio.Semaphore | None = None
        self._resolving: dict[str, asyncio.Future] = {}
        self._background: set[asyncio.Task] = set()
        self._active = 0  # sessions in use (each holds a slot of the semaphore)

    @classmethod
    def settings_options(cls) -> dict[str, Any]:
        return {
            "port": settings.SENDING_MX_PORT,
            "timeout": settings.SENDING_MX_TIMEOUT_SECONDS,
            "concurrency": settings.SENDING_MX_CONCURRENCY,
            "loopback_only": settings.SENDING_MX_LOOPBACK_ONLY,
        }

    # -- the interface --

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Result]:
        if not envelopes:
            return []
        envelopes = list(envelopes)
        helos = self._helo_names({e.source_address for e in envelopes if e.source_address})
        client = DnsClient()  # settings are read here, in the caller's thread
        return self._loop().run(self._send_many(envelopes, helos, client))

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop(self._close_idle())
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._reset_loop_state()

    # -- set-up --

    def _loop(self) -> LoopThread:
        with self._lock:
            if self._thread is None or not self._thread.is_alive:
                # A new process (fork) or after close(): the old loop's sessions are not ours.
                self._thread = LoopThread(f"mx-{self.port}")
                self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="mx-dns")
                self._reset_loop_state()
            return self._thread

    def _helo_names(self, sources: set[str]) -> dict[str, str]:
        """EHLO names of the sending IPs (their helo_hostname), cached for a few minutes."""
        now = time.monotonic()
        missing = [s for s in sources if self._helos.get(s, ("", 0.0))[1] < now]
        if missing:
            from sending.models import SendingIp

            found = dict(
                SendingIp.objects.filter(address__in=missing).values_list(
                    "address", "helo_hostname"
                )
            )
            for source in missing:
                self._helos[source] = (found.get(source) or self.helo, now + HELO_CACHE_SECONDS)
        return {source: self._helos[source][0] for source in sources}

    # -- inside the loop --

    async def _send_many(
        self, envelopes: list[Envelope], helos: dict[str, str], client: DnsClient
    ) -> list[Result]:
        if self._sessions is None:
            self._sessions = asyncio.Semaphore(self.concurrency)
        self._prune_idle()
        results: list[Result | None] = [None] * len(envelopes)
        destinations: dict[tuple[str, str], list[int]] = {}
        for index, envelope in enumerate(envelopes):
            try:
                recipient, _ = wire_address(envelope.recipient)
            except AddressError as error:
                results[index] = local_result(envelope, "failed", str(error), "5.1.3", "hard")
                continue
            key = (address_domain(recipient), envelope.source_address)
            destinations.setdefault(key, []).append(index)
        domains = list({domain for domain, _ in destinations})
        found = await asyncio.gather(*(self._route(client, domain) for domain in domains))
        routes = dict(zip(domains, found, strict=True))

        deliveries = []
        for (domain, source), indices in destinations.items():
            route = routes[domain]
            if route.verdict is not None:
                state, enhanced, text, bounce_class = route.verdict
                for index in indices:
                    results[index] = local_result(
                        envelopes[index], state, text, enhanced, bounce_class
                    )
                continue
            jobs = jobs_build(envelopes, indices, results)
            shaped = envelopes[indices[0]]
            count = min(
                shaped.max_sessions or SESSIONS_PER_DESTINATION,
                SESSIONS_PER_DESTINATION,
                math.ceil(len(jobs) / JOBS_PER_SESSION),
            )
            per_session = min(
                shaped.messages_per_session or MESSAGES_PER_SESSION, MESSAGES_PER_SESSION
            )
            helo = helos.get(source) or self.helo
            for part in range(count):
                deliveries.append(
                    self._deliver(
                        self._sessions, route, source, helo, jobs[part::count], results,
                        per_session,
                    )
                )  # fmt: skip
        await asyncio.gather(*deliveries)
        for index, result in enumerate(results):
            if result is None:  # a safety net: every envelope gets an answer
                results[index] = local_result(envelopes[index], "deferred", "Not attempted.")
        return results  # type: ignore[return-value]

    async def _route(self, client: DnsClient, domain: str) -> Route:
        now = time.monotonic()
        cached = self._routes.get(domain)
        if cached is not None and cached.expires_at > now:
            return cached
        pending = self._resolving.get(domain)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._executor, route_resolve, client, domain)
            self._resolving[domain] = pending
        try:
            route = await pending
        finally:
            self._resolving.pop(domain, None)
        if route.expires_at > now:
            if len(self._routes) > 10_000:
                self._routes = {d: r for d, r in self._routes.items() if r.expires_at > now}
            self._routes[domain] = route
        return route

    async def _deliver(
        self,
        slots: asyncio.Semaphore,
        route: Route,
        source: str,
        helo: str,
        jobs: list[Job],
        results: list,
        per_session: int = MESSAGES_PER_SESSION,
    ) -> None:
        """Work off one destination's jobs on one session at a time."""
        async with slots:
            self._active += 1
            try:
                await self._deliver_jobs(route, source, helo, deque(jobs), results, per_session)
            finally:
                self._active -= 1

    async def _deliver_jobs(
        self,
        route: Route,
        source: str,
        helo: str,
        queue: deque[Job],
        results: list,
        per_session: int = MESSAGES_PER_SESSION,
    ) -> None:
        session: SmtpSession | None = None
        while queue:
            job = queue.popleft()
            try:
                session = await job_run(
                    job, session, results, lambda: self._connect(route, source, helo)
                )
            except NoRoute as error:
                for unreachable in (job, *queue):
                    job_defer(unreachable, results, str(error))
                session = None  # any session it had broke before the new connection failed
                break
            if session is not None and session.message_count >= per_session:
                await session.quit()
                session = None
        if session is not None and session.is_usable:
            self._park(session)

    async def _connect(self, route: Route, source: str, helo: str) -> SmtpSession:
        """A session to the best MX host that gives one: an idle one first, else a new one."""
        refused, candidates = [], []
        for name, addresses in route.hosts:
            for address in addresses:
                if source and _family(address) != _family(source):
                    continue
                if self.loopback_only and not _is_loopback(address):
                    refused.append(f"{name}[{address}]")
                    continue
                candidates.append((name, address))
        if not candidates:
            if refused:
                raise NoRoute(
                    f"Refused: the MX of {route.domain} is outside loopback "
                    f"({', '.join(refused)}) and SENDING_MX_LOOPBACK_ONLY is on."
                )
            raise NoRoute(f"No MX address of {route.domain} matches the source {source}.")
        for _, address in candidates:
            # Keyed by address: domains that share an MX host share its sessions.
            session = self._take_idle((source, address))
            if session is not None:
                return session
        now = time.monotonic()
        alive = [c for c in candidates if self._dead.get(c[1], 0.0) <= now] or candidates
        errors = []
        for name, address in alive:
            for security in ("opportunistic", "none"):
                try:
                    return await self._open(name, address, source, helo, security)
                except ConnectFailed as error:
                    if error.tls and security == "opportunistic":
                        continue  # a broken TLS stack: plain text, as MTAs fall back
                    errors.append(f"{name}[{address}]: {error}")
                    self._dead[address] = time.monotonic() + DEAD_HOST_SECONDS
                    break
        raise NoRoute(f"No MX host of {route.domain} took a connection: {'; '.join(errors)}")

    async def _open(
        self, name: str, address: str, source: str, helo: str, security: str
    ) -> SmtpSession:
        # Idle sessions count against SENDING_MX_CONCURRENCY too: the oldest make room.
        while self._idle and self._idle_count() + self._active > self.concurrency:
            await self._idle_oldest().quit()
        self.connections_opened += 1
        session = await SmtpSession.open(
            host=name,
            port=self.port,
            address=address,
            helo=helo,
            timeout=self.timeout,
            security=security,
            ssl_context=self._tls,
            source_address=source,
            remote_host=f"{name}[{address}]",
        )
        self._dead.pop(address, None)
        session.pool_key = (source, address)
        return session

    # -- idle sessions --

    def _idle_count(self) -> int:
        return sum(len(sessions) for sessions in self._idle.values())

    def _idle_oldest(self) -> SmtpSession:
        key = min(self._idle, key=lambda k: self._idle[k][0].idle_since)
        session = self._idle[key].pop(0)
        if not self._idle[key]:
            del self._idle[key]
        return session

    def _park(self, session: SmtpSession) -> None:
        # The caller still holds its slot: with it released, idle + active stay in bounds.
        if self._idle_count() + self._active > self.concurrency:
            self._quit_later(session)
            return
        session.idle_since = time.monotonic()
        self._idle.setdefault(session.pool_key, []).append(session)

    def _take_idle(self, key: tuple[str, str]) -> SmtpSession | None:
        sessions = self._idle.get(key)
        while sessions:
            session = sessions.pop()
            if not sessions:
                del self._idle[key]
            fresh = time.monotonic() - session.idle_since < IDLE_SECONDS
            if fresh and session.is_usable and not session.reader.at_eof():
                return session
            self._quit_later(session)
        return None

    def _prune_idle(self) -> None:
        cutoff = time.monotonic() - IDLE_SECONDS
        for key, sessions in list(self._idle.items()):
            keep = [s for s in sessions if s.idle_since >= cutoff and s.is_usable]
            for session in sessions:
                if session not in keep:
                    self._quit_later(session)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def _quit_later(self, session: SmtpSession) -> None:
        task = asyncio.get_running_loop().create_task(session.quit())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_idle(self) -> None:
        sessions = [s for idle in self._idle.values() for s in idle]
        self._idle = {}
        await asyncio.gather(*(s.quit() for s in sessions), *self._background)
