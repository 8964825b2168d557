"""Amazon SES notifications mailed through SNS: a JSON document in the body
({"notificationType": "Bounce", "bounce": {"bouncedRecipients": [...]}}), sometimes
wrapped in an SNS envelope, sometimes cut by line wrapping. Read as JSON when it parses,
else field by field."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_START = re.compile(r'\{\s*"(?:notificationType|eventType|Type)"')
# A recipient object: {... "emailAddress": "x" ...} with no brace inside. Its parts are
# bounded: an unbounded "\{[^{}]*" rescans from every "emailAddress" when no "}" follows.
_RECIPIENT = re.compile(r'\{[^{}]{0,2000}?"emailAddress"\s*:\s*"([^"{}]{1,320})"[^{}]{0,2000}\}')
_FIELD = '"{}"\\s*:\\s*"([^"]*)"'


@dataclass(frozen=True)
class SesRecipient:
    address: str
    action: str  # failed | delayed | delivered | "" for a complaint
    status: str
    diagnostic: str


@dataclass(frozen=True)
class SesNotification:
    kind: str  # bounce | complaint | delivered
    recipients: tuple[SesRecipient, ...]
    feedback_type: str = ""


def _field(name: str, text: str) -> str:
    match = re.search(_FIELD.format(name), text)
    return match.group(1) if match else ""


def _document(text: str) -> dict | None:
    match = _START.search(text)
    if not match:
        return None
    try:
        document, _ = json.JSONDecoder().raw_decode(text[match.start() :])
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("Message"), str):
        try:  # the SNS envelope carries the notification as a JSON string
            document = json.loads(document["Message"])
        except ValueError:
            return None
    return document if isinstance(document, dict) else None


def ses_notification(text: str) -> SesNotification | None:
    """The notification in a body, or None when the body holds none."""
    if not text or ("notificationType" not in text and "eventType" not in text):
        return None
    document = _document(text)
    if document is None:
        return _loose(text)
    kind = str(document.get("notificationType") or document.get("eventType") or "").lower()
    if kind == "bounce":
        # a Transient bounce too is final for this message (SES stopped trying): its
        # class comes from the status and diagnostic like any other failure
        bounce = document.get("bounce") or {}
        recipients = tuple(
            SesRecipient(
                address=str(item.get("emailAddress", "")),
                action=str(item.get("action") or "failed").lower(),
                status=str(item.get("status", "")),
                diagnostic=str(item.get("diagnosticCode", "")),
            )
            for item in bounce.get("bouncedRecipients") or []
            if isinstance(item, dict)
        )
        return SesNotification("bounce", recipients)
    if kind == "complaint":
        complaint = document.get("complaint") or {}
        recipients = tuple(
            SesRecipient(str(item.get("emailAddress", "")), "", "", "")
            for item in complaint.get("complainedRecipients") or []
            if isinstance(item, dict)
        )
        feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        return SesNotification("complaint", recipients, feedback_type)
    if kind == "delivery":
        delivery = document.get("delivery") or {}
        recipients = tuple(
            SesRecipient(str(address), "delivered", "2.0.0", str(delivery.get("smtpResponse", "")))
            for address in delivery.get("recipients") or []
        )
        return SesNotification("delivered", recipients)
    return None


def _loose(text: str) -> SesNotification | None:
    """A notification whose JSON does not parse (wrapped lines): its fields one by one."""
    kind = _field("notificationType", text).lower() or _field("eventType", text).lower()
    if kind not in ("bounce", "complaint"):
        return None
    recipients = tuple(
        SesRecipient(
            address=match.group(1),
            action="failed" if kind == "bounce" else "",
            status=_field("status", match.group(0)),
            diagnostic=_field("diagnosticCode", match.group(0)),
        )
        for match in _RECIPIENT.finditer(text)
    )
    feedback_type = (_field("complaintFeedbackType", text) or "abuse").lower()
    return SesNotification(kind, recipients, feedback_type if kind == "complaint" else "")
