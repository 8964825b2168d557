"""What the parser read from one inbound message: the contract between the parser
(sending/feedback/parse.py), the `bounce_parse` command and the services that act on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# FeedbackReport.kind
BOUNCE = "bounce"
COMPLAINT = "complaint"
AUTO_REPLY = "auto_reply"
DELIVERED = "delivered"
UNKNOWN = "unknown"

# RecipientReport.action (RFC 3464's, narrowed)
FAILED = "failed"
DELAYED = "delayed"
DELIVERED_ACTION = "delivered"  # also RFC 3464's "relayed" and "expanded"


@dataclass(frozen=True)
class RecipientReport:
    """One recipient a report is about.

    bounce_class: hard | soft | block | unknown for a failed or delayed recipient, "" for
    a delivered one or a complaint. status: the RFC 3463 enhanced code ("5.1.1") or "".
    diagnostic: the remote server's words (Diagnostic-Code, or the text a non-standard
    bounce quotes), on one line. rule: the classification rule that matched ("" if none).
    """

    address: str | None
    action: str = FAILED
    bounce_class: str = ""
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    rule: str = ""


@dataclass(frozen=True)
class FeedbackReport:
    """kind: bounce | complaint | auto_reply | delivered | unknown.

    recipients: who the report is about (for a complaint, the original recipient).
    feedback_type: ARF's Feedback-Type (abuse, fraud, not-spam, ...) for a complaint.
    original_message_id: the Message-ID of our message, when the report quotes it.
    verp_addresses: addresses of ours found in the quoted original (its Return-Path, the
    `mailto:` of its List-Unsubscribe), which name the delivery when the envelope lost it.
    detector: how it was recognised ("RFC 3464", "Exim", "qmail", "ARF", "Auto-Submitted"...).
    """

    kind: str
    recipients: tuple[RecipientReport, ...] = ()
    feedback_type: str = ""
    original_message_id: str = ""
    verp_addresses: tuple[str, ...] = ()
    detector: str = ""
    subject: str = ""
    from_address: str = ""
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict:
        """JSON-ready (InboundMessage.summary)."""
        return asdict(self)
