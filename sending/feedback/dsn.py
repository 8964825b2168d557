"""RFC 3464 delivery status notifications: the per-recipient groups of every
message/delivery-status part (or of DSN fields a broken DSN put in a text part)."""

from __future__ import annotations

import binascii
import quopri
import re
from dataclasses import dataclass
from email.message import Message

from sending.feedback.fields import address_of, field_blocks, remote_mta_of, reply_text, untyped
from sending.feedback.mime import content_type, headers_text, part_text, walk

STATUS_TYPES = (
    "message/delivery-status",
    "message/global-delivery-status",
    "text/delivery-status",
    "message/x-delivery-status",
)
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d])")
_RECIPIENT_KEYS = ("final-recipient", "original-recipient", "x-actual-recipient")


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient group, its values as written (diagnostic untyped, one line)."""

    address: str
    original_address: str
    action: str  # failed | delayed | delivered | "" (absent or unreadable)
    status: str
    diagnostic: str
    remote_mta: str


def _status_text(part: Message) -> str:
    """The fields of a delivery-status part as text, whatever the parser made of it."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return part_text(part)
    chunks: list[str] = []
    for block in payload:
        if not isinstance(block, Message):
            continue
        chunks.append(headers_text(block))
        body = block.get_payload()
        if isinstance(body, str) and body.strip():
            chunks.append(body)
    text = "\n\n".join(chunks)
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64" and "final-recipient" not in text.lower():
        out = bytearray()
        for line in text.splitlines():
            try:
                out += binascii.a2b_base64(line.strip().encode("ascii", "replace"))
            except (binascii.Error, ValueError):
                continue
        text = bytes(out).decode("utf-8", "replace")
    elif cte == "quoted-printable":
        text = quopri.decodestring(text.encode("utf-8", "replace")).decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


def status_parts(msg: Message) -> tuple[list[Message], int]:
    """The delivery-status parts of the least-nested level that has any, and that level
    (0: the message itself; 1: a message attached to it, e.g. a forwarded bounce)."""
    found: dict[int, list[Message]] = {}
    for part, depth in walk(msg):
        if content_type(part) in STATUS_TYPES:
            found.setdefault(depth, []).append(part)
    return (found[min(found)], min(found)) if found else ([], 0)


def _action_of(value: str) -> str:
    action = value.strip().lower()
    if action.startswith(("fail", "error", "bounce", "reject", "expire")):
        return "failed"
    if action.startswith(("delay", "defer")):
        return "delayed"
    if action.startswith(("deliver", "relay", "expand")):
        return "delivered"
    return ""


def recipients_of_fields(text: str) -> list[DsnRecipient]:
    """The recipient groups among the field blocks of `text`."""
    found: list[DsnRecipient] = []
    for block in field_blocks(text):
        if not any(key in block for key in _RECIPIENT_KEYS):
            continue
        final = address_of(block.get("final-recipient", ""))
        original = address_of(block.get("original-recipient", ""))
        actual = address_of(block.get("x-actual-recipient", ""))
        status = _STATUS.search(block.get("status", ""))
        if original and final and original.lower() != final.lower():
            # an alias or forward rewrote the address: the one we sent to is the original
            final = original
        found.append(
            DsnRecipient(
                address=final or original or actual,
                original_address=original,
                action=_action_of(block.get("action", "")),
                status=".".join(status.groups()) if status else "",
                diagnostic=reply_text(untyped(block.get("diagnostic-code", ""))),
                remote_mta=remote_mta_of(block.get("remote-mta", "")),
            )
        )
    return found


def dsn_recipients(msg: Message) -> tuple[list[DsnRecipient], bool, int]:
    """(recipient groups, whether there is a delivery-status part, its nesting level)."""
    parts, depth = status_parts(msg)
    recipients: list[DsnRecipient] = []
    for part in parts:
        recipients.extend(recipients_of_fields(_status_text(part)))
    return recipients, bool(parts), depth
