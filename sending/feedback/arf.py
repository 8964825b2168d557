"""Complaints: ARF feedback reports (RFC 5965, the format of most feedback loops) and
Microsoft's JMRP reports (Outlook.com / Hotmail), which attach the original message with
an X-HmXmrOriginalRecipient header instead of a machine-readable part."""

from __future__ import annotations

import re
from email.message import Message

from sending.feedback.fields import ADDRESS, address_of, field_blocks
from sending.feedback.mime import (
    content_type,
    header_text,
    headers_text,
    part_text,
    report_type,
    walk,
)

_COMPLAINT_SUBJECT = re.compile(
    r"complaint|abuse report|feedback[- ]loop|\bfbl\b|spam report|reported as spam|\bscomp\b"
    r"|marked as (?:spam|junk)|junk mail report",
    re.I,
)
_BOUNCE_WORDS = re.compile(r"undeliver|delivery|failure|returned", re.I)
_NOT_TYPE_CHARS = re.compile(r"[^a-z0-9_-]")


def _feedback_fields(part: Message) -> dict[str, str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        text = ""
        for block in payload:
            if isinstance(block, Message):
                text += headers_text(block) + "\n"
                body = block.get_payload()
                if isinstance(body, str):
                    text += body + "\n"
    else:
        text = part_text(part)
    merged: dict[str, str] = {}
    for block in field_blocks(text):
        for key, value in block.items():
            merged.setdefault(key, value)
    return merged


def _attached_messages(msg: Message) -> list[Message]:
    found = []
    for part, depth in walk(msg):
        if depth == 0 and content_type(part) == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found.append(payload[0])
    return found


def complaint_fields(msg: Message, *, has_status_part: bool) -> dict[str, str] | None:
    """The facts of a complaint, or None when `msg` is not one.

    Keys: detector, feedback_type, recipient, plus the ARF fields read.
    """
    feedback_part = None
    for part, depth in walk(msg):
        if depth == 0 and content_type(part) == "message/feedback-report":
            feedback_part = part
            break
    is_arf = feedback_part is not None or (
        content_type(msg) == "multipart/report" and report_type(msg) == "feedback-report"
    )
    attached = _attached_messages(msg)
    jmrp_recipient = header_text(msg, "X-HmXmrOriginalRecipient")
    for original in attached:
        jmrp_recipient = jmrp_recipient or header_text(original, "X-HmXmrOriginalRecipient")
    if is_arf:
        fields = _feedback_fields(feedback_part) if feedback_part is not None else {}
        detector = "ARF"
    elif jmrp_recipient:
        fields, detector = {}, "JMRP"
    elif (
        attached
        and not has_status_part
        and _COMPLAINT_SUBJECT.search(header_text(msg, "Subject"))
        and not _BOUNCE_WORDS.search(header_text(msg, "Subject"))
    ):
        fields, detector = {}, "complaint"
    else:
        return None
    recipient = (
        address_of(fields.get("original-rcpt-to", ""))
        or address_of(fields.get("removal-recipient", ""))
        or _first_address(jmrp_recipient)
    )
    if not recipient:
        for original in attached:
            recipient = _first_address(header_text(original, "To"))
            if recipient:
                break
    feedback_type = fields.get("feedback-type", "").strip().lower().split(";")[0].strip()
    if not feedback_type:
        feedback_type = "abuse"
    return {
        **fields,
        "detector": detector,
        "feedback_type": _NOT_TYPE_CHARS.sub("", feedback_type)[:40] or "abuse",
        "recipient": recipient,
    }


def _first_address(value: str) -> str:
    match = ADDRESS.search(value or "")
    return match.group(1) if match else ""
