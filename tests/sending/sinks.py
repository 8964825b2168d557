"""A faulty SMTP sink for transport tests: a real aiosmtpd server on loopback that answers
per recipient as told, drops connections at chosen moments, offers or withholds STARTTLS,
implicit TLS, SMTPUTF8, PIPELINING and AUTH, and records what it received.

In a test (a thread per listening address):

    sink = FaultySink(rules={"temp@*": "451-once", "gone@*": "550"}).start()
    ...
    sink.stop()

As a process (crash tests): `python -m tests.sending.sinks --port 2526 --behaviour
'gone@*=550' --behaviour 'slow@*=drop-after-dot' --record /tmp/sink.jsonl`; it prints
"READY <port>" once listening and appends one JSON line per accepted message. `--delay
0.02` holds every reply to DATA that long (a slow receiver, so that a send lasts long
enough for a crash test to land mid-send).

Actions for a recipient (the first rule whose fnmatch pattern matches the address wins):
    250            accept (the default)
    451 | 550      refuse at RCPT, every time (any 4xx/5xx code, or a full reply text)
    451-once       refuse with 451 the first time this address is seen, accept after
    drop-at-rcpt   close the connection when this RCPT arrives (before DATA)
    drop-at-rcpt-once   the same, the first time only
    drop-after-dot accept, receive the whole message, then close without a reply
    drop-after-dot-once the same, the first time only
    data-554       accept at RCPT, refuse the data with 554 after the final dot
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fnmatch
import hashlib
import json
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult

SINK_HOSTNAME = "sink.test"  # given to aiosmtpd so that it never calls socket.getfqdn()

_certificate_cache: dict[str, tuple[str, str]] = {}


def self_signed_certificate(directory: Path | str) -> tuple[str, str]:
    """A self-signed certificate (and its key) for loopback, written into `directory`.

    Valid for 127.0.0.1-127.0.0.3, ::1, localhost and sink.test, so a client that is told to
    trust it (SENDING_SMTP_CA_FILE) verifies the name as well as the signature.
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(directory)
    if str(directory) in _certificate_cache:
        return _certificate_cache[str(directory)]
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sink.test")])
    now = dt.datetime.now(dt.UTC)
    names = [x509.DNSName("localhost"), x509.DNSName(SINK_HOSTNAME)]
    names += [
        x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    ]
    names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "sink-cert.pem", directory / "sink-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    _certificate_cache[str(directory)] = (str(cert_path), str(key_path))
    return _certificate_cache[str(directory)]


def server_tls_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def port_free_on(hosts: tuple[str, ...]) -> int:
    """A TCP port that is free on every one of `hosts` (the mx tests' sinks share one)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {hosts}")


@dataclass
class Received:
    """One message as the sink accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str  # the client's address (the source address the client bound)
    host: str  # the sink address that received it
    helo: str
    is_tls: bool
    authenticated_as: str
    mail_options: list[str]
    dropped: bool = False  # the connection was closed after the dot, without a reply

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.SMTP)


@dataclass
class SessionLog:
    peer: str
    host: str
    helo: str = ""
    is_tls: bool = False
    pipelined: bool = False
    commands: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, sink: FaultySink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        log = self.sink._log(server)
        log.helo, log.is_tls = hostname, _is_tls(server, session)
        if self.sink.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        log = self.sink._log(server)
        log.commands.append("MAIL")
        # RCPT and DATA already waiting behind MAIL: the client pipelines (RFC 2920).
        log.pipelined = log.pipelined or bool(server._reader._buffer)
        with self.sink._lock:
            reply = self.sink.mail_replies.pop(0) if self.sink.mail_replies else None
        if reply is not None:
            if reply.startswith("421"):  # closing the channel, as on an idle timeout
                server.loop.call_later(0.01, server.transport.close)
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        sink = self.sink
        sink._log(server).commands.append("RCPT")
        action = sink.action_for(address)
        with sink._lock:
            sink.rcpt_seen[address] += 1
            first = sink.rcpt_seen[address] == 1
        once = action.endswith("-once")
        base = action.removesuffix("-once")
        if base == "drop-at-rcpt" and (first or not once):
            server.transport.abort()
            return "421 4.3.0 dropped"  # never seen: the connection is gone
        if base.isdigit() and int(base) >= 400 and (first or not once):
            return _reply_for(base)
        if base[:3].isdigit() and int(base[:3]) >= 400 and " " in base:
            return base  # a full reply text
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_RSET(self, server, session, envelope):
        self.sink._log(server).commands.append("RSET")
        return "250 2.0.0 Ok"

    async def handle_DATA(self, server, session, envelope):
        sink = self.sink
        sink._log(server).commands.append("DATA")
        actions = [sink.action_for(rcpt) for rcpt in envelope.rcpt_tos]
        drop = False
        for rcpt, action in zip(envelope.rcpt_tos, actions, strict=True):
            if action.removesuffix("-once") == "drop-after-dot":
                with sink._lock:
                    sink.dot_seen[rcpt] += 1
                    first = sink.dot_seen[rcpt] == 1
                drop = drop or first or not action.endswith("-once")
        if "data-554" in actions:
            return "554 5.7.1 Message refused by content policy"
        if sink.delay:
            await asyncio.sleep(sink.delay)
        sink._record(server, session, envelope, dropped=drop)
        if drop:
            server.transport.abort()
            return "250 never seen"
        return "250 2.0.0 Ok: queued"


def _is_tls(server, session) -> bool:
    """STARTTLS sets session.ssl; implicit TLS shows only on the transport."""
    transport = server.transport
    implicit = transport is not None and transport.get_extra_info("ssl_object") is not None
    return session.ssl is not None or implicit


def _reply_for(code: str) -> str:
    return {
        "451": "451 4.3.0 Temporary failure, try again later",
        "450": "450 4.2.1 Mailbox busy, try again later",
        "550": "550 5.1.1 <recipient>: Recipient address rejected: User unknown",
        "552": "552 5.2.2 Mailbox full",
        "554": "554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org",
    }.get(code, f"{code} {code[0]}.0.0 Refused by the test sink")


class _CountingSMTP(SMTP):
    """aiosmtpd's server, counting sessions (from EHLO/HELO: the controller's own readiness
    probe never greets) and how many are open at once."""

    sink: FaultySink

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self._counted = False
            self._sockname = transport.get_extra_info("sockname")

    async def smtp_EHLO(self, hostname):
        self.sink._session_start(self)
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname):
        self.sink._session_start(self)
        await super().smtp_HELO(hostname)

    def connection_lost(self, error):
        self.sink._session_end(self)
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, sink: FaultySink, host: str, **kwargs):
        self.sink = sink
        super().__init__(_Handler(sink), hostname=host, port=sink.port, **kwargs)

    def factory(self):
        server = _CountingSMTP(self.handler, **self.SMTP_kwargs)
        server.sink = self.sink
        return server


class FaultySink:
    """See the module docstring. `hosts` may name several loopback addresses (one port)."""

    def __init__(
        self,
        *,
        hosts: tuple[str, ...] = ("127.0.0.1",),
        port: int = 0,
        rules: dict[str, str] | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        certificate: tuple[str, str] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
        auth: tuple[str, str] | None = None,
        record_path: str | None = None,
        delay: float = 0.0,
    ):
        self.hosts = hosts
        self.port = port or port_free_on(hosts)
        self.rules = dict(rules or {})
        self.pipelining = pipelining
        self.auth = auth
        self.record_path = record_path
        self.delay = delay  # seconds before each reply to DATA
        self.received: list[Received] = []
        self.sessions: list[SessionLog] = []
        self.rcpt_seen: Counter[str] = Counter()
        self.dot_seen: Counter[str] = Counter()
        self.max_concurrent = 0
        # Replies to the next MAIL commands, whatever the session (e.g. a 421 "timeout").
        self.mail_replies: list[str] = []
        self._open: dict[int, SessionLog] = {}
        self._lock = threading.Lock()
        self.event = threading.Event()
        kwargs: dict = {
            "server_hostname": SINK_HOSTNAME,
            "enable_SMTPUTF8": smtputf8,
            "ready_timeout": 10,
        }
        if (starttls or implicit_tls) and certificate is None:
            raise ValueError("TLS needs a certificate: self_signed_certificate(tmp_path)")
        if starttls:
            kwargs["tls_context"] = server_tls_context(*certificate)
        if implicit_tls:
            kwargs["ssl_context"] = server_tls_context(*certificate)
        if auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = starttls or implicit_tls
        self._controllers = [_Controller(self, host, **kwargs) for host in hosts]

    # -- life --

    def start(self) -> FaultySink:
        for controller in self._controllers:
            controller.start()
        return self

    def stop(self) -> None:
        for controller in self._controllers:
            if controller._thread is not None:
                controller.stop()

    def __enter__(self) -> FaultySink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what the tests read --

    @property
    def host(self) -> str:
        return self.hosts[0]

    @property
    def session_count(self) -> int:
        return len(self.sessions)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    def received_by(self, host: str) -> list[Received]:
        return [r for r in self.received if r.host == host]

    def action_for(self, address: str) -> str:
        for pattern, action in self.rules.items():
            if fnmatch.fnmatchcase(address.lower(), pattern.lower()):
                return action
        return "250"

    # -- hooks --

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        login = getattr(auth_data, "login", b"") or b""
        password = getattr(auth_data, "password", b"") or b""
        expected = self.auth or ("", "")
        ok = (login.decode(), password.decode()) == expected
        return AuthResult(success=ok, handled=False, auth_data=login.decode() if ok else None)

    def _log(self, server) -> SessionLog:
        with self._lock:
            log = self._open.get(id(server))
        return log or SessionLog(peer="", host="")

    def _session_start(self, server) -> None:
        if getattr(server, "_counted", False):
            return
        server._counted = True
        peer = server.session.peer[0] if server.session and server.session.peer else ""
        log = SessionLog(
            peer=peer, host=server._sockname[0], is_tls=_is_tls(server, server.session)
        )
        with self._lock:
            self.sessions.append(log)
            self._open[id(server)] = log
            self.max_concurrent = max(self.max_concurrent, len(self._open))

    def _session_end(self, server) -> None:
        with self._lock:
            self._open.pop(id(server), None)

    def _record(self, server, session, envelope, *, dropped: bool) -> None:
        log = self._log(server)
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            peer=session.peer[0] if session.peer else "",
            host=server._sockname[0],
            helo=log.helo,
            is_tls=_is_tls(server, session),
            authenticated_as=session.auth_data or "" if session.authenticated else "",
            mail_options=list(envelope.mail_options),
            dropped=dropped,
        )
        with self._lock:
            self.received.append(received)
        self.event.set()
        if self.record_path:
            line = {
                "at": time.time(),
                "mail_from": received.mail_from,
                "rcpt_tos": received.rcpt_tos,
                "size": len(received.data),
                "sha256": hashlib.sha256(received.data).hexdigest(),
                "message_id": str(received.message.get("Message-ID", "")),
                "peer": received.peer,
                "host": received.host,
                "dropped": dropped,
            }
            with self._lock, open(self.record_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", action="append", help="address to listen on (repeatable)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--behaviour", action="append", default=[], help="'pattern=action', e.g. 'gone@*=550'"
    )
    parser.add_argument("--starttls", action="store_true")
    parser.add_argument("--tls", action="store_true", help="implicit TLS")
    parser.add_argument("--cert-dir", default=None, help="where the self-signed cert goes")
    parser.add_argument("--no-smtputf8", action="store_true")
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--auth", default=None, help="user:password required")
    parser.add_argument("--record", default=None, help="append a JSON line per message here")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before each reply to DATA"
    )
    args = parser.parse_args(argv)
    rules = dict(item.split("=", 1) for item in args.behaviour)
    certificate = None
    if args.starttls or args.tls:
        certificate = self_signed_certificate(args.cert_dir or Path.cwd() / "var" / "sink-tls")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    sink = FaultySink(
        hosts=tuple(args.host or ["127.0.0.1"]),
        port=args.port,
        rules=rules,
        starttls=args.starttls,
        implicit_tls=args.tls,
        certificate=certificate,
        smtputf8=not args.no_smtputf8,
        pipelining=not args.no_pipelining,
        auth=auth,  # type: ignore[arg-type]
        record_path=args.record,
        delay=args.delay,
    ).start()
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    print(f"READY {sink.port}", flush=True)
    stopped.wait()
    sink.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
