"""The message a report is about, as the report quotes it: an attached message/rfc822,
a text/rfc822-headers part, or a header block pasted after "Original message follows";
and what names our delivery in it (Message-ID, VERP addresses)."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import Message
from email.utils import getaddresses

from sending.feedback.fields import ADDRESS
from sending.feedback.mime import content_type, header_text, headers_text, part_text, walk

VERP = re.compile(
    r"(?<![\w.+-])((?:bounces|unsubscribe)\+[a-z0-9][a-z0-9._=-]{0,100}"
    r"@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+)",
    re.I,
)
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,250}@[^<>\s]{1,250})>")
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,60}:[ \t]?\S?")
_QUOTED_START = re.compile(
    r"^(?:Return-Path|Received|Message-ID|DKIM-Signature|Received-SPF|"
    r"Authentication-Results|ARC-Seal|From|To|Subject|Date|MIME-Version|List-Unsubscribe)"
    r"[ \t]*:",
    re.I,
)


def _headers_message(text: str) -> Message | None:
    """A header block pasted as text, parsed; None when it is not one."""
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _QUOTED_START.match(line)), None)
    if start is None:
        return None
    block: list[str] = []
    for line in lines[start : start + 400]:
        if not line.strip():
            break
        if _HEADER_LINE.match(line) or line[:1] in (" ", "\t"):
            block.append(line)
        else:
            break
    if len(block) < 2:
        return None
    return email.message_from_string("\n".join(block) + "\n\n", policy=policy.compat32)


def original_of(msg: Message, *, quoted_text: str = "") -> Message | None:
    """The quoted original: attached, as a headers part, or pasted after a marker."""
    for part, depth in walk(msg):
        if depth > 1:
            continue
        ctype = content_type(part)
        if ctype == "message/rfc822" and depth == 0:
            payload = part.get_payload()
            if (
                isinstance(payload, list)
                and payload
                and isinstance(payload[0], Message)
                and len(payload[0].keys()) > 0
            ):
                return payload[0]
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers") and depth == 0:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            parsed = _headers_message(part_text(part))
            if parsed is not None:
                return parsed
    return _headers_message(quoted_text) if quoted_text else None


def message_id_of(original: Message | None) -> str:
    if original is None:
        return ""
    match = _MESSAGE_ID.search(header_text(original, "Message-ID"))
    if match:
        return f"<{match.group(1)}>"
    return ""


def recipient_of(original: Message | None) -> str:
    """The first address of the quoted original's To (who we sent it to)."""
    if original is None:
        return ""
    for name in ("To", "X-Original-To", "Delivered-To"):
        value = header_text(original, name)
        if not value:
            continue
        for _, address in getaddresses([value]):
            match = ADDRESS.search(address or "")
            if match:
                return match.group(1)
    return ""


def verp_addresses_in(*texts: str) -> tuple[str, ...]:
    """VERP addresses (bounces+TOKEN@host, unsubscribe+TOKEN@host), in order, lower-cased."""
    found: list[str] = []
    for text in texts:
        for match in VERP.finditer(text or ""):
            address = match.group(1).lower().rstrip(".")
            if address not in found:
                found.append(address)
    return tuple(found)


def original_texts(original: Message | None) -> str:
    return headers_text(original) if original is not None else ""
