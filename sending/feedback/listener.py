"""The inbound listener: an SMTP server (aiosmtpd) for what comes back from receivers.

It takes mail for the return-path hosts of sending domains (VERP bounces and the
List-Unsubscribe `mailto:` addresses) and for MAILIN_FBL_ADDRESSES (ARF complaints), and
for no other domain: it is never an open relay. Each accepted message is written to the
database (an InboundMessage row, committed by sending.services.inbound.inbound_store)
before the 250 goes out, so a message the sender considers delivered is never lost; only
then is a task asked to process it. A failed enqueue is only logged: the inbound sweep
hands received rows to a task again.

Recipients accepted at a return-path host (anything else there is 550 5.1.1):
    bounces+<token>@, unsubscribe+<token>@   VERP; a forged token is still accepted, the
                                              processor reads the token and drops it
    bounces@, postmaster@, abuse@            plain addresses some MTAs and people use

The SMTP server runs on one event-loop thread; the ORM is synchronous, so the database
work runs in a small thread pool of its own (which also caps the listener's database
connections at STORE_THREADS).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.db import close_old_connections, connections

from sending import verp
from sending.selectors import return_path_host_exists
from sending.services.inbound import inbound_store

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 100
# RFC 5321 4.5.3.2.7: a server should wait at least five minutes for the next command.
COMMAND_TIMEOUT_SECONDS = 300
HOST_CACHE_SECONDS = 10.0
HOST_CACHE_SIZE = 10_000
STORE_THREADS = 4
PLAIN_LOCALS = frozenset({verp.BOUNCES, "postmaster", "abuse"})
VERP_LOCALS = frozenset({verp.BOUNCES, verp.UNSUBSCRIBE})

RELAY_DENIED = "550 5.7.1 Relaying denied: this server takes mail for its own domains only"
NO_MAILBOX = "550 5.1.1 No such mailbox here"
TOO_MANY_RECIPIENTS = f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS} a message)"
TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"
TOO_MANY_FROM_PEER = b"421 4.7.0 Too many connections from your address, try again later\r\n"
SESSION_EXPIRED = b"421 4.4.2 Session time limit exceeded, closing connection\r\n"
# A session over its time while a message is being received or stored is given this much
# more, again and again, rather than cut between the commit and its 250 (a duplicate).
SESSION_EXPIRY_RETRY_SECONDS = 1.0
STORE_FAILED = "451 4.3.0 Temporary failure storing the message, try again later"


class MailinHandler:
    """aiosmtpd handler: choose recipients, store each message, hand it to a task."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_connections_per_peer: int | None = None,
        session_seconds: float | None = None,
        log: Callable[[str], None] | None = None,
        host_cache_seconds: float = HOST_CACHE_SECONDS,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_peer = (
            settings.MAILIN_MAX_CONNECTIONS_PER_PEER
            if max_connections_per_peer is None
            else max_connections_per_peer
        )
        self.session_seconds = (
            settings.MAILIN_SESSION_SECONDS if session_seconds is None else session_seconds
        )
        # Touched on the event-loop thread only.
        self.open_connections = 0
        self.peer_connections: Counter[str] = Counter()
        self.fbl_addresses = frozenset(a.strip().lower() for a in settings.MAILIN_FBL_ADDRESSES)
        self.log = log or logger.info
        self.host_cache_seconds = host_cache_seconds
        self._hosts: dict[str, tuple[bool, float]] = {}
        self._executor = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="mailin-db")

    def close(self) -> None:
        """Close the database connections of the pool's threads, then the pool."""
        # Django's connections belong to the thread that opened them: each thread closes
        # its own, and the barrier makes every thread of the pool take one of these calls.
        barrier = threading.Barrier(STORE_THREADS)

        def close_connection() -> None:
            try:
                barrier.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
            finally:
                connections.close_all()

        for _ in range(STORE_THREADS):
            self._executor.submit(close_connection)
        self._executor.shutdown(wait=True)

    async def _in_thread(self, function: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return TOO_MANY_RECIPIENTS
        reply = await self._recipient_reply(address)
        if reply is None:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        return reply

    async def _recipient_reply(self, address: str) -> str | None:
        """None to accept address, else the refusal."""
        lowered = address.strip().lower()
        if lowered in self.fbl_addresses:
            return None
        local, at, host = lowered.rpartition("@")
        if not at or not local or not await self._is_return_path_host(host):
            return RELAY_DENIED
        base, plus, _ = local.partition("+")
        if (plus and base in VERP_LOCALS) or (not plus and local in PLAIN_LOCALS):
            return None
        return NO_MAILBOX

    async def _is_return_path_host(self, host: str) -> bool:
        # Cached, refusals too: a relay attempt or a bounce storm must not become one
        # query per RCPT. A domain added a moment ago is served within the cache time.
        now = time.monotonic()
        cached = self._hosts.get(host)
        if cached is not None and cached[1] > now:
            return cached[0]
        known = await self._in_thread(_return_path_host_known, host)
        if len(self._hosts) >= HOST_CACHE_SIZE:
            self._hosts.clear()
        self._hosts[host] = (known, now + self.host_cache_seconds)
        return known

    async def handle_exception(self, error: Exception) -> str:
        # A hook that failed (the database not answering a RCPT's host look-up): the
        # sender is asked to retry, never told the address does not exist.
        logger.error("mailin: SMTP session error: %r", error, exc_info=error)
        return "451 4.3.0 Temporary failure, try again later"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        peer = session.peer
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        fields = {
            "peer": peer_text[:100],
            "helo": (session.host_name or "")[:255],
            # The null reverse-path (every real bounce has it) is stored as "".
            "mail_from": "" if envelope.mail_from == "<>" else (envelope.mail_from or "")[:320],
            "recipients": list(envelope.rcpt_tos),
            "size": len(raw),
            "raw": raw,
        }
        try:
            inbound_id = await self._in_thread(_inbound_store, fields)
        except Exception:
            logger.exception("mailin: could not store a message from %s", peer_text)
            return STORE_FAILED
        self.log(
            f"#{inbound_id} from {fields['mail_from'] or '<>'} [{peer_text}] to "
            f"{', '.join(envelope.rcpt_tos)} ({len(raw)} bytes)"
        )
        return f"250 2.0.0 Stored as #{inbound_id}"


def _return_path_host_known(host: str) -> bool:
    close_old_connections()
    return return_path_host_exists(host=host)


def _inbound_store(fields: dict) -> int:
    """Commit the message, then ring the task's bell; runs on a thread of the pool."""
    # A connection broken since the last message (a database restart) is replaced here
    # rather than failing this message too.
    close_old_connections()
    return inbound_store(**fields).pk


class MailinSMTP(SMTP):
    """aiosmtpd's SMTP session with the listener's limits: open connections counted (overall
    and per client address) and a deadline on the whole session."""

    _peer_ip: str | None = None
    _deadline: asyncio.TimerHandle | None = None
    _in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler = self.event_handler
        peer = transport.get_extra_info("peername")
        peer_ip = peer[0] if isinstance(peer, tuple) else str(peer or "")
        if handler.peer_connections[peer_ip] >= handler.max_connections_per_peer:
            # One address cannot take every slot: the others' bounces still get in.
            transport.write(TOO_MANY_FROM_PEER)
            transport.close()
            return
        handler.peer_connections[peer_ip] += 1
        self._peer_ip = peer_ip
        super().connection_made(transport)
        self._deadline = self.loop.call_later(handler.session_seconds, self._session_expired)

    def _session_expired(self) -> None:
        """The command timeout is reset by every command (NOOPs included); this is not."""
        if self.transport is None:
            return
        if self._in_data:
            self._deadline = self.loop.call_later(
                SESSION_EXPIRY_RETRY_SECONDS, self._session_expired
            )
            return
        logger.warning("mailin: session of %s over its time limit, closed", self._peer_ip)
        self.transport.write(SESSION_EXPIRED)
        self.transport.close()

    @functools.wraps(SMTP.smtp_DATA)  # keeps aiosmtpd's syntax marks (HELP, dispatch)
    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False

    def connection_lost(self, error: Exception | None) -> None:
        handler = self.event_handler
        try:
            if self._peer_ip is not None:
                # Refused connections never started a session: nothing of aiosmtpd's to end.
                if self._deadline is not None:
                    self._deadline.cancel()
                super().connection_lost(error)
        finally:
            handler.open_connections -= 1
            if self._peer_ip is not None:
                handler.peer_connections[self._peer_ip] -= 1
                if handler.peer_connections[self._peer_ip] <= 0:
                    del handler.peer_connections[self._peer_ip]
                self._peer_ip = None


class _TooBusy(asyncio.Protocol):
    """What a connection over the limit gets: 421 and the door closed (RFC 5321 3.8)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(TOO_MANY_CONNECTIONS)
        transport.close()


class MailinController(Controller):
    """A threaded aiosmtpd server with the listener's limits; start() and stop()."""

    def __init__(
        self,
        handler: MailinHandler,
        *,
        host: str,
        port: int,
        max_message_bytes: int,
        timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(
            handler,
            hostname=host,
            port=port,
            # The name in the greeting and EHLO reply; also keeps aiosmtpd from calling
            # socket.getfqdn(), which can wait on DNS.
            server_hostname=settings.SENDING_INBOUND_HOST,
            data_size_limit=max_message_bytes,
            timeout=timeout,
            enable_SMTPUTF8=True,
        )

    def factory(self):
        # Called on the event-loop thread for each new connection, before it is used.
        if self.handler.open_connections >= self.handler.max_connections:
            return _TooBusy()
        self.handler.open_connections += 1
        return MailinSMTP(self.handler, **self.SMTP_kwargs)

    def stop(self, no_assert: bool = False) -> None:
        try:
            super().stop(no_assert=no_assert)
        finally:
            self.handler.close()


def mailin_start(
    *,
    host: str,
    port: int,
    max_message_bytes: int | None = None,
    max_connections: int | None = None,
    max_connections_per_peer: int | None = None,
    session_seconds: float | None = None,
    timeout: float = COMMAND_TIMEOUT_SECONDS,
    log: Callable[[str], None] | None = None,
) -> MailinController:
    """Start the listener on a thread of its own; the caller stops it with .stop()."""
    handler = MailinHandler(
        max_connections=(
            settings.MAILIN_MAX_CONNECTIONS if max_connections is None else max_connections
        ),
        max_connections_per_peer=max_connections_per_peer,
        session_seconds=session_seconds,
        log=log,
    )
    controller = MailinController(
        handler,
        host=host,
        port=port,
        max_message_bytes=(
            settings.MAILIN_MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
        ),
        timeout=timeout,
    )
    try:
        controller.start()
    except BaseException:
        handler.close()
        raise
    return controller
