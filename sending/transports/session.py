"""A small asyncio SMTP client shared by the `smtp` and `mx` transports.

Why an own client: smtplib blocks a thread per connection and has no PIPELINING;
aiosmtplib (5.x) has no PIPELINING either (its protocol reads one reply per command), and
its data() sends DATA and the body in one call, raising the same error before and after
the final dot. The transports need PIPELINING (RFC 2920: MAIL, RCPT and DATA in one write,
so a message costs two round trips instead of four) and a clear line between a connection
lost before the final dot (nothing was handed over: retry) and after it (the message may
have arrived: `unknown`, RFC 1047), with per-recipient replies inside one transaction.
Sessions live on a loop thread owned by the transport (`LoopThread`), so connections stay
open between `send_many` calls and many sessions are in flight at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.conf import settings

from sending.classify import classify, enhanced_code_of
from sending.transports.base import Envelope, Result, TransportConfigError

T = TypeVar("T")
CRLF = b"\r\n"
# More recipients than this in one transaction may be refused (RFC 5321 4.5.3.1.8).
MAX_RECIPIENTS = 100
# What never belongs inside an address on the wire: controls, space, angle brackets.
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")


# --- the event loop the sessions live on ------------------------------------------------


class LoopThread:
    """An asyncio loop on a daemon thread; callers block on `run` until a coroutine ends.

    One per transport instance, made in the process that uses it (a loop thread does not
    survive fork: `pid` tells a forked child to make its own).
    """

    def __init__(self, name: str) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def is_alive(self) -> bool:
        return self.pid == os.getpid() and self._thread.is_alive()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self, last: Coroutine[Any, Any, Any] | None = None, timeout: float = 5.0) -> None:
        """Run `last` (closing the sessions), then stop the loop and its thread."""
        if not self.is_alive:
            if last is not None:
                last.close()
            return
        if last is not None:
            # Shutting down: a server that does not answer QUIT is no reason to fail.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(last, self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


# --- addresses ---------------------------------------------------------------------------


class AddressError(ValueError):
    pass


def wire_address(address: str) -> tuple[str, bool]:
    """An address as written in MAIL FROM / RCPT TO, and whether it needs SMTPUTF8.

    A non-ASCII domain becomes its A-label (IDNA); a non-ASCII local part stays UTF-8 and
    needs SMTPUTF8 (RFC 6531): it is never turned into an RFC 2047 encoded word.
    """
    if address == "":
        return "", False  # the null reverse path of a bounce
    if _UNSAFE_ADDRESS.search(address):
        raise AddressError(f"Invalid address {address!r}: space, control or angle bracket.")
    local, at, domain = address.rpartition("@")
    if not (at and local and domain):
        raise AddressError(f"Invalid address {address!r}: no local part or domain.")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise AddressError(f"Invalid domain in {address!r}: {error}") from None
    return f"{local}@{domain}", not local.isascii()


def address_domain(address: str) -> str:
    """The domain of a wire address, lower-cased (the key of direct-to-MX routing)."""
    return address.rpartition("@")[2].lower()


def default_helo() -> str:
    """The name given in EHLO when nothing better is known: the platform's host name.

    Never socket.getfqdn(): that is a DNS look-up that may leave the machine.
    """
    return urlsplit(settings.BASE_URL).hostname or "localhost"


# --- one SMTP session ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class ConnectFailed(Exception):
    """No usable session: refused, timed out, a greeting or EHLO that is not 2xx."""

    def __init__(self, text: str, *, reply: Reply | None = None, tls: bool = False):
        super().__init__(text)
        self.reply = reply
        self.tls = tls  # the TLS handshake failed (direct-to-MX retries in plain text)


class SessionBroken(Exception):
    """The connection failed inside a transaction.

    after_dot: the message and its final dot were written, so it may have arrived;
    replies then holds each recipient's RCPT refusal, or None where it was accepted.
    """

    def __init__(self, text: str, *, after_dot: bool = False, replies=None, reply=None):
        super().__init__(text)
        self.after_dot = after_dot
        self.replies: list[Reply | None] = replies or []
        self.reply: Reply | None = reply  # a 421 "closing" reply, when that was the cause


_BROKEN = (OSError, TimeoutError, ValueError, EOFError)


def _dot_stuffed(message: bytes) -> bytes:
    # bytes.replace returns the same object when there is nothing to replace: no copy.
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


class SmtpSession:
    """One connection after EHLO (and STARTTLS, AUTH): MAIL/RCPT/DATA transactions."""

    def __init__(self, reader, writer, *, remote_host: str, timeout: float):
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.remote_host = remote_host
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.is_tls = False
        self.is_usable = True
        self.message_count = 0
        self.idle_since = time.monotonic()
        self.pool_key: tuple[str, str] = ("", "")  # (source, address) of direct-to-MX

    @classmethod
    async def open(
        cls,
        *,
        host: str,
        port: int,
        address: str = "",
        helo: str,
        timeout: float,
        security: str = "none",
        ssl_context: ssl.SSLContext | None = None,
        source_address: str = "",
        username: str = "",
        password: str = "",
        remote_host: str = "",
    ) -> SmtpSession:
        """Connect to `address` (default: host) and greet; TLS and AUTH as asked.

        security: none | starttls (required) | tls (implicit) | opportunistic (STARTTLS
        when offered). Raises ConnectFailed, or TransportConfigError for what only a
        change of configuration mends (no STARTTLS where required, refused credentials,
        a certificate that does not verify).
        """
        implicit = security == "tls"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    address or host,
                    port,
                    ssl=ssl_context if implicit else None,
                    server_hostname=host if implicit else None,
                    local_addr=(source_address, 0) if source_address else None,
                )
        except ssl.SSLCertVerificationError as error:
            raise TransportConfigError(f"{host}:{port}: certificate not trusted: {error}") from None
        except ssl.SSLError as error:
            raise ConnectFailed(f"TLS handshake failed: {error}", tls=True) from None
        except TimeoutError:
            raise ConnectFailed(f"connection timed out after {timeout:g} s") from None
        except OSError as error:
            raise ConnectFailed(_describe(error)) from None
        session = cls(reader, writer, remote_host=remote_host or f"{host}:{port}", timeout=timeout)
        session.is_tls = implicit
        try:
            await session._greet(host, helo, security, ssl_context, username, password)
        except BaseException:
            session.abort()
            raise
        return session

    async def _greet(self, host, helo, security, ssl_context, username, password) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                greeting = await self._read()
            if greeting.code != 220:
                raise ConnectFailed(f"greeting: {greeting}", reply=greeting)
            await self._ehlo(helo)
            if security in ("starttls", "opportunistic") and not self.is_tls:
                if "starttls" in self.extensions:
                    await self._starttls(host, helo, ssl_context)
                elif security == "starttls":
                    raise TransportConfigError(f"{self.remote_host} does not offer STARTTLS.")
            if username:
                await self._auth(username, password)
        except _BROKEN as error:
            if isinstance(error, ssl.SSLCertVerificationError):
                raise TransportConfigError(
                    f"{self.remote_host}: certificate not trusted: {error}"
                ) from None
            if isinstance(error, ssl.SSLError):
                raise ConnectFailed(f"TLS handshake failed: {error}", tls=True) from None
            raise ConnectFailed(_describe(error)) from None

    async def _ehlo(self, helo: str) -> None:
        reply = await self.command(f"EHLO {helo}".encode())
        if reply.is_positive:
            self.extensions = {}
            for line in reply.text.split("\n")[1:]:
                keyword, _, value = line.strip().partition(" ")
                self.extensions[keyword.lower()] = value
            return
        reply = await self.command(f"HELO {helo}".encode())
        if not reply.is_positive:
            raise ConnectFailed(f"HELO: {reply}", reply=reply)
        self.extensions = {}

    async def _starttls(self, host: str, helo: str, ssl_context: ssl.SSLContext | None) -> None:
        reply = await self.command(b"STARTTLS")
        if reply.code != 220:
            raise ConnectFailed(f"STARTTLS: {reply}", reply=reply, tls=True)
        async with asyncio.timeout(self.timeout):
            await self.writer.start_tls(
                ssl_context or ssl.create_default_context(), server_hostname=host
            )
        self.is_tls = True
        await self._ehlo(helo)  # RFC 3207: forget what was learnt before TLS

    async def _auth(self, username: str, password: str) -> None:
        mechanisms = self.extensions.get("auth", "").upper().split()
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self.command(f"AUTH PLAIN {token}".encode())
        elif "LOGIN" in mechanisms:
            reply = await self.command(b"AUTH LOGIN")
            for secret in (username, password):
                if reply.code != 334:
                    break
                reply = await self.command(base64.b64encode(secret.encode()))
        else:
            offered = f" (offers {' '.join(mechanisms)})" if mechanisms else ""
            raise TransportConfigError(
                f"{self.remote_host} offers no AUTH PLAIN or LOGIN{offered}; credentials are set."
            )
        if reply.code == 235:
            return
        if 500 <= reply.code < 600:
            raise TransportConfigError(f"{self.remote_host} refused the credentials: {reply}")
        raise ConnectFailed(f"AUTH: {reply}", reply=reply)

    def supports(self, extension: str) -> bool:
        return extension in self.extensions

    async def command(self, line: bytes) -> Reply:
        self.writer.write(line + CRLF)
        async with asyncio.timeout(self.timeout):
            return await self._read()

    async def _read(self) -> Reply:
        """One reply; the caller bounds the wait (one timeout for a pipelined group costs
        less than one per reply, which shows at thousands of messages a second)."""
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line.endswith(b"\n"):
                raise EOFError("the server closed the connection")
            code = line[:3]
            if not code.isdigit():
                raise ValueError(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:].rstrip(b"\r\n"))
            if line[3:4] != b"-":
                break
        return Reply(int(code), _reply_text(lines))

    async def send(
        self, mail_from: str, recipients: list[str], message: bytes, *, smtputf8: bool = False
    ) -> list[Reply]:
        """One transaction: a reply per recipient (its RCPT refusal, or the answer to the
        data). Raises SessionBroken when the connection fails on the way."""
        if not self.is_usable:
            raise SessionBroken("the session is no longer usable")
        self.message_count += 1
        params = b" SMTPUTF8" if smtputf8 else b""
        if "8bitmime" in self.extensions and (smtputf8 or not message.isascii()):
            params += b" BODY=8BITMIME"
        if "size" in self.extensions:
            params += b" SIZE=%d" % len(message)
        mail = b"MAIL FROM:<" + mail_from.encode() + b">" + params + CRLF
        rcpts = [b"RCPT TO:<" + rcpt.encode() + b">" + CRLF for rcpt in recipients]
        try:
            async with asyncio.timeout(self.timeout):
                replies = await self._envelope(mail, rcpts)
            if isinstance(replies, list):
                return replies  # refused before the data: nothing more to send
            accepted, rcpt_replies = replies
            body = _dot_stuffed(message)
            end = b".\r\n" if body.endswith(CRLF) else b"\r\n.\r\n"
            # One write, so one send(): the copy costs less than a second system call.
            self.writer.writelines([body, end])
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except SessionBroken:
            self.is_usable = False
            raise
        except _BROKEN as error:
            self.is_usable = False
            raise SessionBroken(_describe(error)) from None
        # The final dot has left: from here a lost connection means "may have arrived".
        try:
            async with asyncio.timeout(self.timeout):
                final = await self._read()
        except _BROKEN as error:
            self.is_usable = False
            replies = [None if ok else r for ok, r in zip(accepted, rcpt_replies, strict=True)]
            raise SessionBroken(_describe(error), after_dot=True, replies=replies) from None
        if final.code == 421:
            self.is_usable = False  # a reply all the same: not accepted, try again later
        self.idle_since = time.monotonic()
        return [final if ok else r for ok, r in zip(accepted, rcpt_replies, strict=True)]

    async def _envelope(self, mail: bytes, rcpts: list[bytes]):
        """MAIL, RCPT and DATA (pipelined when offered): ([accepted], [RCPT replies]) when
        the server waits for the data, else the final reply of each recipient."""
        if "pipelining" in self.extensions:
            self.writer.write(b"".join([mail, *rcpts, b"DATA\r\n"]))
            mail_reply = await self._transaction_reply()
            rcpt_replies = [await self._transaction_reply() for _ in rcpts]
            data_reply = await self._transaction_reply()
            if not mail_reply.is_positive:
                rcpt_replies = [mail_reply] * len(rcpts)
        else:
            self.writer.write(mail)
            mail_reply = await self._transaction_reply()
            if not mail_reply.is_positive:
                await self._rset()
                return [mail_reply] * len(rcpts)
            rcpt_replies = []
            for rcpt in rcpts:
                self.writer.write(rcpt)
                rcpt_replies.append(await self._transaction_reply())
            if not any(reply.is_positive for reply in rcpt_replies):
                await self._rset()  # after refused RCPTs, before the next MAIL
                return rcpt_replies
            self.writer.write(b"DATA\r\n")
            data_reply = await self._transaction_reply()
        accepted = [reply.is_positive for reply in rcpt_replies]
        if data_reply.code != 354:
            await self._rset()
            # The data was refused for everyone who had been accepted.
            return [data_reply if ok else r for ok, r in zip(accepted, rcpt_replies, strict=True)]
        if not any(accepted):
            # A server that says 354 with no recipient: end an empty message, reset.
            self.writer.write(b".\r\n")
            await self._read()
            await self._rset()
            return rcpt_replies
        return accepted, rcpt_replies

    async def _transaction_reply(self) -> Reply:
        reply = await self._read()
        if reply.code == 421:  # the server is closing the channel (RFC 5321 3.8)
            raise SessionBroken(f"the server is closing the connection: {reply}", reply=reply)
        return reply

    async def _rset(self) -> None:
        reply = await self.command(b"RSET")
        if not reply.is_positive:
            self.is_usable = False

    async def quit(self) -> None:
        """Say goodbye politely (QUIT, short wait), then close."""
        try:
            if self.is_usable:
                self.writer.write(b"QUIT\r\n")
                async with asyncio.timeout(1):
                    await self.reader.readline()
        except (*_BROKEN, asyncio.CancelledError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        self.is_usable = False
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()


def _reply_text(lines: list[bytes]) -> str:
    """The lines of a reply as one string; an enhanced code repeated on every line of a
    multi-line reply (Gmail's) is kept once."""
    texts = [line.decode("utf-8", "replace") for line in lines]
    code = enhanced_code_of(texts[0])
    if code and texts[0].startswith(code):
        texts[1:] = [text.removeprefix(code).lstrip() for text in texts[1:]]
    return "\n".join(texts)


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out waiting for the server"
    if isinstance(error, OSError) and error.errno is not None:
        return os.strerror(error.errno)  # "Connection refused", not asyncio's wording
    return str(error) or type(error).__name__


# --- jobs and results, shared by the smtp and mx transports --------------------------------


@dataclass
class Job:
    """One SMTP transaction: envelopes with the same sender and the same bytes."""

    envelopes: list[Envelope] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    mail_from: str = ""
    message: bytes = b""
    smtputf8: bool = False
    handed_over: bool = False  # MAIL FROM was sent for it at least once


def jobs_build(
    envelopes: Sequence[Envelope], indices: Sequence[int], results: list[Result | None]
) -> list[Job]:
    """Group envelopes into transactions; an address that cannot go on the wire gets its
    failed Result here."""
    jobs: dict[tuple, Job] = {}
    ordered: list[Job] = []
    for index in indices:
        envelope = envelopes[index]
        try:
            mail_from, sender_utf8 = wire_address(envelope.mail_from)
            recipient, recipient_utf8 = wire_address(envelope.recipient)
        except AddressError as error:
            results[index] = local_result(envelope, "failed", str(error), "5.1.3", "hard")
            continue
        smtputf8 = sender_utf8 or recipient_utf8
        key = (mail_from, envelope.message, smtputf8)
        job = jobs.get(key)
        if job is None or recipient in job.recipients or len(job.recipients) >= MAX_RECIPIENTS:
            job = Job(mail_from=mail_from, message=envelope.message, smtputf8=smtputf8)
            jobs[key] = job
            ordered.append(job)
        job.envelopes.append(envelope)
        job.indices.append(index)
        job.recipients.append(recipient)
    return ordered


def reply_result(envelope: Envelope, reply: Reply, remote_host: str) -> Result:
    verdict = classify(code=reply.code, text=reply.text)
    return Result(
        delivery_id=envelope.delivery_id,
        state=verdict.state,
        smtp_code=reply.code,
        enhanced_code=enhanced_code_of(reply.text),
        response=reply.text,
        remote_host=remote_host[:253],
        bounce_class=verdict.bounce_class,
    )


def local_result(
    envelope: Envelope,
    state: str,
    text: str,
    enhanced: str = "",
    bounce_class: str = "",
    remote_host: str = "",
) -> Result:
    """A verdict of our own, with no reply from a server behind it (smtp_code None)."""
    return Result(
        delivery_id=envelope.delivery_id,
        state=state,
        enhanced_code=enhanced,
        response=text,
        remote_host=remote_host[:253],
        bounce_class=bounce_class,
    )


def job_defer(job: Job, results: list[Result | None], text: str, enhanced: str = "4.4.1") -> None:
    for envelope, index in zip(job.envelopes, job.indices, strict=True):
        results[index] = local_result(envelope, "deferred", text, enhanced)


async def job_attempt(
    session: SmtpSession, job: Job, results: list[Result | None], *, last: bool
) -> bool:
    """One try of a job on a session; True when every recipient has its Result.

    False when the connection broke before the final dot and this was not the `last`
    try: nothing was handed over, and the caller tries again on a new connection.
    """
    host = session.remote_host
    if job.smtputf8 and not session.supports("smtputf8"):
        for envelope, index in zip(job.envelopes, job.indices, strict=True):
            results[index] = local_result(
                envelope,
                "failed",
                "The server does not offer SMTPUTF8, needed for this non-ASCII address.",
                "5.6.7",
                "soft",
                host,
            )
        return True
    job.handed_over = True
    try:
        replies = await session.send(
            job.mail_from, job.recipients, job.message, smtputf8=job.smtputf8
        )
    except SessionBroken as broken:
        if broken.after_dot:
            text = f"Connection lost after the final dot, before the server's reply: {broken}"
            for envelope, index, reply in zip(
                job.envelopes, job.indices, broken.replies, strict=True
            ):
                results[index] = (
                    reply_result(envelope, reply, host)
                    if reply is not None
                    else local_result(envelope, "unknown", text, remote_host=host)
                )
            return True
        if not last:
            return False
        for envelope, index in zip(job.envelopes, job.indices, strict=True):
            if broken.reply is not None:
                results[index] = reply_result(envelope, broken.reply, host)
            else:
                results[index] = local_result(
                    envelope,
                    "deferred",
                    f"Connection lost before the message was handed over: {broken}",
                    "4.4.2",
                    remote_host=host,
                )
        return True
    for envelope, index, reply in zip(job.envelopes, job.indices, replies, strict=True):
        results[index] = reply_result(envelope, reply, host)
    return True


async def job_run(
    job: Job,
    session: SmtpSession | None,
    results: list[Result | None],
    connect: Callable[[], Awaitable[SmtpSession]],
) -> SmtpSession | None:
    """Run a job to its results on `session`, or on a new one from `connect()` (whose
    exceptions pass through); the session to go on with, None when it broke.

    A message not handed over is tried again once on a new connection. A pooled session
    that turns out dead (the server closed it while idle) does not use up that retry.
    """
    retried = False
    while True:
        if session is None:
            session = await connect()
        reused = session.message_count > 0
        done = await job_attempt(session, job, results, last=retried and not reused)
        if not session.is_usable:
            session.abort()
            session = None
        if done:
            return session
        retried = retried or not reused
