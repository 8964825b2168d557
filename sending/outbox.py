"""The operators' outbox: the messages the local sink of `make run` stored, read back.

The sink (sending/sink.py) writes one .eml file per message under VAR_DIR/outbox, named
by its arrival time, so newest first is a sort of file names and only the shown page is
read and parsed. Each message's DKIM signatures are verified with dkimpy through the
app's resolver (settings.DNS_RESOLVERS: the DNS sandbox under `make run`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import dkim as dkimpy
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.http import Http404

from sending.resolver import DnsClient, Status, txt_strings
from sending.sandbox import RESERVED_TLDS
from sending.sink import ENVELOPE_FROM_HEADER, ENVELOPE_TO_HEADER

PER_PAGE = 25
# The sink's file names: arrival time (UTC, microseconds) and a random suffix.
MESSAGE_ID_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6}Z)-[0-9a-f]{12}$")

PASS, FAIL, NONE = "pass", "fail", "none"
UNPUBLISHED, TEMPERROR, PERMERROR = "unpublished", "temperror", "permerror"
DKIM_LABELS = {
    PASS: "DKIM pass",
    FAIL: "DKIM fail",
    NONE: "Unsigned",
    UNPUBLISHED: "Key not in DNS",
    TEMPERROR: "DNS error",
    PERMERROR: "Invalid signature or key",
}


@dataclass(frozen=True)
class DkimSignatureCheck:
    """One DKIM-Signature header and what became of it."""

    domain: str
    selector: str
    algorithm: str
    state: str
    detail: str


@dataclass(frozen=True)
class DkimVerdict:
    state: str  # pass | fail | none | unpublished | temperror | permerror
    signatures: list[DkimSignatureCheck] = field(default_factory=list)

    @property
    def label(self) -> str:
        return DKIM_LABELS[self.state]


@dataclass(frozen=True)
class MessagePart:
    content_type: str
    filename: str
    size: int


@dataclass
class OutboxMessage:
    id: str
    received_at: datetime
    envelope_from: str
    envelope_to: list[str]
    raw: bytes  # the message as received (DATA), without the sink's envelope lines
    message: EmailMessage
    dkim: DkimVerdict

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def subject(self) -> str:
        return _header_text(self.message, "Subject")

    @property
    def from_header(self) -> str:
        return _header_text(self.message, "From")

    @property
    def to_header(self) -> str:
        return _header_text(self.message, "To")

    @property
    def headers(self) -> list[tuple[str, str]]:
        rows = []
        for name, value in self.message.raw_items():
            try:
                text = str(self.message.policy.header_fetch_parse(name, value))
            except Exception:  # a malformed header is still shown, as it came
                text = str(value)
            rows.append((name, text))
        return rows

    @property
    def text(self) -> str:
        return _body_text(self.message, "plain")

    @property
    def html(self) -> str:
        return _body_text(self.message, "html")

    @property
    def parts(self) -> list[MessagePart]:
        return [
            MessagePart(
                content_type=part.get_content_type(),
                filename=part.get_filename() or "",
                size=len(part.get_payload(decode=True) or b""),
            )
            for part in self.message.walk()
            if not part.is_multipart()
        ]

    @property
    def source(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


def outbox_directory() -> Path:
    """Where `manage.py smtp_sink` stores mail by default."""
    return Path(settings.VAR_DIR) / "outbox"


def _header_text(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name) or "")
    except Exception:  # a malformed header reads as empty rather than breaking the page
        return ""


def _body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return ""
    try:
        return part.get_content()
    except (LookupError, ValueError):  # unknown charset or broken transfer encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def _split_envelope(data: bytes) -> tuple[str, list[str], bytes]:
    """The sink's two envelope lines, then the message exactly as it arrived."""
    envelope = {}
    for name in (ENVELOPE_FROM_HEADER, ENVELOPE_TO_HEADER):
        prefix = f"{name}: ".encode()
        if not data.startswith(prefix):
            break
        line, _, data = data.partition(b"\r\n")
        envelope[name] = line[len(prefix) :].decode("utf-8", errors="replace")
    recipients = [r.strip() for r in envelope.get(ENVELOPE_TO_HEADER, "").split(",") if r.strip()]
    return envelope.get(ENVELOPE_FROM_HEADER, ""), recipients, data


class _KeyLookups:
    """dkimpy's dnsfunc through the app's resolver, remembering each answer's status."""

    def __init__(self) -> None:
        self.client: DnsClient | None = None
        self.answers: dict[str, tuple[Status, bytes | None, str]] = {}

    def status(self, name: str) -> tuple[Status, str]:
        status, _, error = self.answers.get(name.rstrip(".").lower(), (Status.ERROR, None, ""))
        return status, error

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        key = name.decode("ascii", errors="replace").rstrip(".").lower()
        if key not in self.answers:
            self.answers[key] = self._lookup(key)
        return self.answers[key][1]

    def _lookup(self, name: str) -> tuple[Status, bytes | None, str]:
        if not settings.DNS_RESOLVERS and name.endswith(RESERVED_TLDS):
            # Reserved names are in no public DNS: asking the system's resolvers would
            # only send the demo's queries off the machine.
            return Status.NXDOMAIN, None, ""
        if self.client is None:
            self.client = DnsClient()
        lookup = self.client.lookup(name, "TXT")
        if not lookup.ok:
            return lookup.status, None, lookup.error
        values = [txt_strings(record) for record in lookup.records]
        # A name may hold other TXT records too; the key record is the one with p=.
        value = next((v for v in values if "p=" in v), values[0] if values else "")
        return Status.OK, value.encode(), ""


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _signature_check(raw: bytes, idx: int, lookups: _KeyLookups) -> DkimSignatureCheck:
    errors = _Errors()
    logger = logging.Logger("sending.outbox.dkim", logging.ERROR)
    logger.addHandler(errors)
    verifier = dkimpy.DKIM(raw, logger=logger)
    try:
        ok = verifier.verify(idx=idx, dnsfunc=lookups)
    except dkimpy.DKIMException as error:
        tags = getattr(verifier, "signature_fields", None) or {}
        state = FAIL if "body hash mismatch" in str(error) else PERMERROR
        detail = "the body was changed after signing" if state == FAIL else str(error)
        return _check(tags, state, detail)
    tags = verifier.signature_fields or {}
    if ok:
        return _check(tags, PASS, "signature verified with the key published in DNS")
    domain = tags.get(b"d", b"").decode(errors="replace")
    selector = tags.get(b"s", b"").decode(errors="replace")
    status, error = lookups.status(f"{selector}._domainkey.{domain}")
    if status in (Status.NXDOMAIN, Status.NODATA):
        demo = " (demo)" if domain.lower().endswith(RESERVED_TLDS) else ""
        return _check(tags, UNPUBLISHED, f"not published in DNS{demo}")
    if status == Status.ERROR:
        return _check(tags, TEMPERROR, f"key look-up failed: {error or 'no answer'}")
    if errors.messages:  # the key record was found but is unusable
        return _check(tags, PERMERROR, errors.messages[-1])
    return _check(tags, FAIL, "signature does not match the headers and the published key")


def _check(tags: dict, state: str, detail: str) -> DkimSignatureCheck:
    def tag(name: bytes) -> str:
        return tags.get(name, b"").decode(errors="replace")

    return DkimSignatureCheck(
        domain=tag(b"d"), selector=tag(b"s"), algorithm=tag(b"a"), state=state, detail=detail
    )


def message_dkim_verify(*, raw: bytes, lookups: _KeyLookups | None = None) -> DkimVerdict:
    """Every DKIM signature of raw checked; one that fails makes the verdict fail."""
    lookups = lookups or _KeyLookups()
    parsed = dkimpy.DKIM(raw)
    count = sum(1 for name, _ in parsed.headers if name.lower() == b"dkim-signature")
    if not count:
        return DkimVerdict(state=NONE)
    checks = [_signature_check(raw, idx, lookups) for idx in range(count)]
    states = {check.state for check in checks}
    # A signature that does not verify means tampering or a broken signer: that shows first.
    for state in (FAIL, PASS, PERMERROR, TEMPERROR, UNPUBLISHED):
        if state in states:
            return DkimVerdict(state=state, signatures=checks)
    return DkimVerdict(state=checks[0].state, signatures=checks)


def _message_read(path: Path, lookups: _KeyLookups) -> OutboxMessage:
    envelope_from, envelope_to, raw = _split_envelope(path.read_bytes())
    stamp = MESSAGE_ID_RE.match(path.stem)
    received_at = datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    return OutboxMessage(
        id=path.stem,
        received_at=received_at,
        envelope_from=envelope_from,
        envelope_to=envelope_to,
        raw=raw,
        message=BytesParser(policy=policy.default).parsebytes(raw),
        dkim=message_dkim_verify(raw=raw, lookups=lookups),
    )


def _message_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    # Partial files are dot-names, so a half-written message is never listed.
    names = [
        entry.name
        for entry in directory.iterdir()
        if entry.suffix == ".eml" and MESSAGE_ID_RE.match(entry.stem) and entry.is_file()
    ]
    return sorted(names, reverse=True)


def outbox_message_list(*, page: int | str | None = 1, per_page: int = PER_PAGE) -> Page:
    """A page of stored messages, newest first; only this page's files are read."""
    directory = outbox_directory()
    result = Paginator(_message_names(directory), per_page).get_page(page)
    lookups = _KeyLookups()  # one key look-up per selector for the whole page
    messages = []
    for name in result.object_list:
        try:
            messages.append(_message_read(directory / name, lookups))
        except FileNotFoundError:  # deleted since the directory was listed
            continue
    result.object_list = messages
    return result


def outbox_message_get(*, message_id: str) -> OutboxMessage:
    if not MESSAGE_ID_RE.match(message_id):
        raise Http404("No such message.")
    path = outbox_directory() / f"{message_id}.eml"
    if not path.is_file():
        raise Http404("No such message.")
    return _message_read(path, _KeyLookups())
