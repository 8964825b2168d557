"""feedback_parse(raw) -> FeedbackReport: what one inbound message says about our mail.

Order of reading, most authoritative first:
1. a complaint (ARF, JMRP) — sending/feedback/arf.py — or an Amazon SES notification
   mailed by SNS — sending/feedback/ses.py;
2. an automatic reply (out of office, challenge, read receipt), unless something says the
   message is a bounce — sending/feedback/autoreply.py;
3. a DSN's per-recipient groups — sending/feedback/dsn.py;
4. a bounce forwarded as an attachment, read as the message it is;
5. the text of a non-standard bounce — sending/feedback/plaintext.py, with flufl.bounce's
   detectors as a second opinion on who the recipients are, and the quoted original's To
   (sending/feedback/original.py) as the last resort.

Each recipient is classified with sending.classify.feedback_class_of. Pure reading: no
database, never raises (a parser error becomes kind "unknown" with a note).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, replace
from email.message import Message

from sending.classify import enhanced_code_of, feedback_class_of, status_refined
from sending.feedback import report as r
from sending.feedback.arf import complaint_fields
from sending.feedback.autoreply import STRONG, WEAK, auto_reply_signal
from sending.feedback.dsn import DsnRecipient, dsn_recipients, recipients_of_fields
from sending.feedback.fields import ADDRESS, reply_text, untyped
from sending.feedback.mime import (
    MAX_LINE_CHARS,
    ORIGINAL_TYPES,
    bounded,
    content_type,
    header_text,
    headers_text,
    message_read,
    part_text,
    report_type,
    walk,
)
from sending.feedback.original import (
    message_id_of,
    original_of,
    recipient_of,
    verp_addresses_in,
)
from sending.feedback.plaintext import (
    MAX_FINDINGS,
    TextFinding,
    describe,
    expansions_resolved,
    global_reply,
    is_delayed,
    is_system_address,
    later_sections,
    recipients_in,
    remote_mta_in,
    split_original,
)
from sending.feedback.ses import SesNotification, ses_notification

logger = logging.getLogger(__name__)

FLUFL_BYTES = 64 * 1024
FLUFL_LINES = 1500  # its detectors run dozens of patterns on each line

_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned mail|mail delivery (?:failed|failure|system|problem)"
    r"|delivery (?:status notification|failure|failed|problem|report|notification)"
    r"|failure notice|non[- ]?delivery|nondeliverable|not delivered|could not be delivered"
    r"|delivery has failed|returned to sender|mail system error|message not delivered"
    r"|unzustellbar|nicht zugestellt|non remis|no se (?:ha )?(?:podido )?entrega|non recapitabile"
    r"|onbestelbaar|niet bezorgd|unable to deliver|delivery (?:delayed|incomplete)|\bdelayed mail"
    r"|warning: could not send|message (?:was )?rejected|bounced (?:mail|message|e-?mail)",
    re.I,
)
_BOUNCE_SENDER = re.compile(
    r"mailer[-_]?daemon|post[-_]?master|mail delivery (?:subsystem|system|service)|\bmdaemon\b"
    r"|microsoftexchange[0-9a-f]{32}|mail ?administrator|\bmailer\b",
    re.I,
)
_BOUNCE_TEXT = re.compile(
    r"undeliver|could ?n[o']t be delivered|wasn't delivered|was not delivered|not be delivered"
    r"|delivery (?:has )?failed|failed permanently|delivery to the following"
    r"|permanent (?:fatal )?error"
    r"|mail delivery (?:failed|system|subsystem)|delivery status notification|non-?delivery"
    r"|unable to deliver|message not delivered|address(?:es)? failed|could not deliver"
    r"|failure notice|user unknown|no such user|delivery failure|recipient address rejected"
    r"|(?:rejected|refused) (?:your|the) (?:message|mail)|message was rejected"
    r"|unzustellbar|nicht zugestellt|non remis|no se ha podido entregar|non recapitabile"
    r"|in reply to (?:rcpt to|end of data|mail from)|smtp error from remote|remote host said"
    r"|delivery (?:delayed|incomplete)|has not been delivered|will (?:continue to )?retry",
    re.I,
)
_SMTP_REPLY = re.compile(
    r"(?<![\w.#:/+-])[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}|(?<![\w.])[45]\d\d [A-Za-z<]"
)
_MAILER_FROM_LINE = re.compile(
    r"^[ \t>]*from:[^\n]{0,500}?(?:mailer-daemon|postmaster|mail delivery)", re.I | re.M
)
_DSN_FIELD_LINE = re.compile(r"^(?:final|original)-recipient[ \t]*:", re.I | re.M)


def feedback_parse(raw: bytes) -> r.FeedbackReport:
    """Read one inbound message; never raises."""
    try:
        return _parse(message_read(raw), nesting=0, head=_flufl_head(raw))
    except RecursionError:
        return r.FeedbackReport(kind=r.UNKNOWN, notes=("parser error: nesting too deep",))
    except Exception as exc:
        logger.exception("feedback_parse failed")
        return r.FeedbackReport(kind=r.UNKNOWN, notes=(f"parser error: {type(exc).__name__}",))


def _flufl_head(raw: bytes) -> bytes:
    """What flufl.bounce reads: the head of the message, in lines and in bytes, with each
    line cut to MAX_LINE_CHARS."""
    lines = bytes(raw[:FLUFL_BYTES]).split(b"\n")[:FLUFL_LINES]
    return b"\n".join(line[:MAX_LINE_CHARS] for line in lines)


def _address(value: str) -> str:
    match = ADDRESS.search(value or "")
    return match.group(1) if match else ""


def _texts(msg: Message) -> list[str]:
    """Decoded human-readable texts of the report (not of attached messages)."""
    plain, rich = [], []
    for part, depth in walk(msg, into_originals=False):
        if depth > 0 or part.is_multipart():
            continue
        ctype = content_type(part)
        broken_multipart = ctype.startswith("multipart/")  # no usable boundary: read as text
        if ctype in ORIGINAL_TYPES or not (ctype.startswith("text/") or broken_multipart):
            continue
        disposition = str(part.get("content-disposition", "")).lower()
        if disposition.startswith("attachment") and ctype not in ("text/plain", "text/html"):
            continue
        (rich if ctype == "text/html" else plain).append(part_text(part))
    return plain or rich


def _own_addresses(msg: Message) -> set[str]:
    """Addresses of the bounce itself (its sender and where it was sent): never recipients."""
    found = set()
    for name in (
        "From",
        "To",
        "Sender",
        "Reply-To",
        "Return-Path",
        "Delivered-To",
        "X-Original-To",
        "Errors-To",
        "Cc",
    ):
        for match in ADDRESS.finditer(header_text(msg, name)):
            found.add(match.group(1).lower())
    return found


def _classified(
    *,
    address: str | None,
    action: str,
    status: str,
    diagnostic: str,
    remote_mta: str,
    context: str = "",
) -> r.RecipientReport:
    if action == r.DELIVERED_ACTION:
        return r.RecipientReport(address, action, "", status, diagnostic, remote_mta, "")
    status, bounce_class, rule = _class_of(status, diagnostic, action == r.DELAYED, context)
    return r.RecipientReport(address, action, bounce_class, status, diagnostic, remote_mta, rule)


@functools.lru_cache(maxsize=256)
def _class_of(status: str, diagnostic: str, delayed: bool, context: str) -> tuple[str, str, str]:
    """(refined status, class, rule). Cached: the recipients of one bounce often share
    their reply and always their context, and each reading runs every rule."""
    status = status_refined(status, diagnostic)
    bounce_class, rule = feedback_class_of(enhanced=status, text=diagnostic, delayed=delayed)
    if not rule and context:
        # the reply named no reason: the bounce's own words may ("mailbox is full")
        retry_class, retry_rule = feedback_class_of(
            enhanced=status, text=diagnostic, context=context, delayed=delayed
        )
        if retry_rule:
            bounce_class, rule = retry_class, retry_rule
    return status, bounce_class, rule


def _dsn_report(groups: list[DsnRecipient], context: _Context) -> list[r.RecipientReport]:
    seen: dict[str, r.RecipientReport] = {}
    result: list[r.RecipientReport] = []
    findings = context.findings
    for group in groups:
        address = group.address or None
        text = findings.get((address or "").lower())
        if address is None and len(findings) == 1:
            text = next(iter(findings.values()))
            address = text.address
        elif address is None and len(groups) == 1 and context.original_to:
            address = context.original_to  # "Final-Recipient: rfc822;" with nothing after it
        action = group.action
        if not action:
            digit = (group.status or enhanced_code_of(group.diagnostic) or "5")[0]
            action = {"2": r.DELIVERED_ACTION, "4": r.DELAYED}.get(digit, r.FAILED)
        only_one = len(groups) == 1
        diagnostic = (
            group.diagnostic
            or (text.diagnostic if text else "")
            or (context.reply if only_one else "")
        )
        remote = (
            group.remote_mta
            or (text.remote_mta if text else "")
            or remote_mta_in(group.diagnostic)
            or (context.remote_mta if only_one else "")
        )
        item = _classified(
            address=address,
            action=action,
            status=group.status,
            diagnostic=diagnostic,
            remote_mta=remote,
            # a DSN that gives no Diagnostic-Code leaves the reason to its text part
            context="" if group.diagnostic else context.report_text[:2000],
        )
        key = (address or "").lower()
        if key and key in seen:
            # the same recipient twice (Exchange lists some twice): keep the most telling
            previous = seen[key]
            if previous.action == r.DELIVERED_ACTION or (
                not previous.diagnostic and item.diagnostic
            ):
                result[result.index(previous)] = item
                seen[key] = item
            continue
        if key:
            seen[key] = item
        result.append(item)
    return result


def _flufl_recipients(head: bytes | None) -> tuple[list[str], list[str]]:
    """flufl.bounce's detectors, run on the head of the message only (they read every
    line with dozens of patterns)."""
    if not head:
        return [], []
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(message_read(head))
    except Exception:
        return [], []

    def decoded(items) -> list[str]:
        out = []
        for item in sorted(items):
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            address = _address(text)
            if address:
                out.append(address)
        return out

    return decoded(temporary), decoded(permanent)


def _attached_bounce(msg: Message, nesting: int) -> r.FeedbackReport | None:
    """A bounce or complaint forwarded as an attachment, read on its own."""
    if nesting >= 2:
        return None
    for part, depth in walk(msg):
        if depth != 0 or content_type(part) != "message/rfc822":
            continue
        payload = part.get_payload()
        if not (isinstance(payload, list) and payload and isinstance(payload[0], Message)):
            continue
        inner = _parse(payload[0], nesting=nesting + 1, head=None)
        if inner.kind in (r.BOUNCE, r.COMPLAINT, r.DELIVERED) and any(
            item.address for item in inner.recipients
        ):
            return inner
    return None


def _ses_report(ses: SesNotification, common: dict) -> r.FeedbackReport:
    if ses.kind == r.COMPLAINT:
        recipients = tuple(r.RecipientReport(item.address) for item in ses.recipients)
        return r.FeedbackReport(
            kind=r.COMPLAINT,
            recipients=recipients,
            feedback_type=ses.feedback_type,
            detector="Amazon SES",
            **common,
        )
    recipients = tuple(
        _classified(
            address=item.address,
            action={"delivered": r.DELIVERED_ACTION, "delayed": r.DELAYED}.get(
                item.action, r.FAILED
            ),
            status=item.status,
            diagnostic=reply_text(untyped(item.diagnostic)),
            remote_mta="",
        )
        for item in ses.recipients
    )
    kind = r.DELIVERED if ses.kind == "delivered" else r.BOUNCE
    return r.FeedbackReport(kind=kind, recipients=recipients, detector="Amazon SES", **common)


def _is_bounce_shaped(original: Message | None) -> bool:
    """Whether the message a report quotes is itself a bounce (a loop: we never send
    bounces, so one coming back is not about a delivery of ours)."""
    if original is None:
        return False
    return report_type(original) == "delivery-status" or bool(
        _BOUNCE_SENDER.search(header_text(original, "From"))
        and _BOUNCE_SUBJECT.search(header_text(original, "Subject"))
    )


def _forwarded_bounce(quoted_text: str) -> bool:
    """Whether the quoted part of a message is a bounce (its From a mailer, its words a
    bounce's)."""
    head = quoted_text[:5000]
    return bool(_MAILER_FROM_LINE.search(head) and _BOUNCE_TEXT.search(head))


def _bounce_evidence(msg: Message, *, has_status_part: bool, report_text: str) -> tuple[bool, bool]:
    """(strong, weak) signs that a message is a bounce. Strong: its structure, sender or
    subject says so; weak: its words do (Postfix and Exim bounces also carry
    Auto-Submitted: auto-replied, so an automatic reply yields to either)."""
    head = report_text[:20000]
    strong = (
        has_status_part
        or report_type(msg) == "delivery-status"
        or bool(header_text(msg, "X-Failed-Recipients"))
        or bool(_BOUNCE_SENDER.search(header_text(msg, "From")))
        or bool(_BOUNCE_SUBJECT.search(header_text(msg, "Subject")))
    )
    weak = bool(_BOUNCE_TEXT.search(head)) or (
        header_text(msg, "Return-Path").strip() == "<>" and bool(_SMTP_REPLY.search(head))
    )
    return strong, weak


def _parse(msg: Message, *, nesting: int, head: bytes | None) -> r.FeedbackReport:
    groups, has_status_part, status_depth = dsn_recipients(msg)
    capped = len(groups) > MAX_FINDINGS
    groups = groups[:MAX_FINDINGS]
    if status_depth > 0:
        # the DSN is inside an attached message: a bounce forwarded as an attachment
        attached = _attached_bounce(msg, nesting)
        if attached is not None:
            return attached
    report_text, quoted_text = split_original(bounded("\n\n".join(_texts(msg))))
    report_text = expansions_resolved(report_text)
    original = original_of(msg, quoted_text=quoted_text)
    verp = verp_addresses_in(
        headers_text(original) if original is not None else "",
        quoted_text,
        report_text,
        header_text(msg, "To"),
        header_text(msg, "Delivered-To"),
        header_text(msg, "X-Original-To"),
    )
    common = {
        "subject": header_text(msg, "Subject")[:300],
        "from_address": _address(header_text(msg, "From")),
        "original_message_id": message_id_of(original),
        "verp_addresses": verp,
        "notes": ("the quoted original is itself a bounce",) if _is_bounce_shaped(original) else (),
    }
    if capped:
        common["notes"] = (*common["notes"], f"only the first {MAX_FINDINGS} recipients read")

    # 1. a complaint
    complaint = complaint_fields(msg, has_status_part=has_status_part)
    if complaint is not None:
        recipient = complaint["recipient"] or recipient_of(original)
        return r.FeedbackReport(
            kind=r.COMPLAINT,
            recipients=(r.RecipientReport(recipient, bounce_class=""),) if recipient else (),
            feedback_type=complaint["feedback_type"],
            detector=complaint["detector"],
            **common,
        )

    # an Amazon SES notification mailed by SNS: JSON in the body
    ses = ses_notification(report_text[:100_000])
    if ses is not None and ses.recipients:
        ses = replace(ses, recipients=ses.recipients[:MAX_FINDINGS])
        return _ses_report(ses, common)

    # 2. an automatic reply, unless something says it is a bounce
    strong, weak = _bounce_evidence(msg, has_status_part=has_status_part, report_text=report_text)
    strong = strong or bool(groups)
    strength, auto_detector = auto_reply_signal(msg)
    if (strength == STRONG and not strong) or (strength == WEAK and not (strong or weak)):
        return r.FeedbackReport(kind=r.AUTO_REPLY, detector=auto_detector, **common)

    excluded = _own_addresses(msg) | set(verp)
    findings: list[TextFinding] = []
    if strong or weak or _forwarded_bounce(quoted_text):
        findings = recipients_in(report_text, excluded=excluded)
        if not findings and not groups:
            # a bounce forwarded inline by a person sits after "-----Original Message-----"
            for section in later_sections(quoted_text):
                findings = recipients_in(section, excluded=excluded)
                if findings:
                    report_text, weak = section, True
                    break
        describe(report_text, findings)
    context = _Context(
        report_text=report_text,
        findings={item.address.lower(): item for item in findings},
        reply=global_reply(report_text) if (strong or weak) else "",
        remote_mta=remote_mta_in(report_text),
        original_to=recipient_of(original),
    )

    # 3. a DSN (or the DSN fields a broken one wrote into its text part)
    detector = "RFC 3464"
    if not groups and _DSN_FIELD_LINE.search(report_text):
        groups = [group for group in recipients_of_fields(report_text) if group.address]
        detector = "RFC 3464 fields in text"
    if groups:
        recipients = _dsn_report(groups, context)
        delivered = all(item.action == r.DELIVERED_ACTION for item in recipients)
        return r.FeedbackReport(
            kind=r.DELIVERED if delivered else r.BOUNCE,
            recipients=tuple(recipients),
            detector=detector,
            **common,
        )

    # 4. a bounce attached to another message, or not a bounce at all
    if not (strong or weak):
        attached = _attached_bounce(msg, nesting)
        if attached is not None:
            return attached
        kind = r.AUTO_REPLY if strength else r.UNKNOWN
        return r.FeedbackReport(kind=kind, detector=auto_detector if strength else "", **common)

    # 5. a non-standard bounce: its text, flufl.bounce, the quoted original's To
    action = r.DELAYED if is_delayed(common["subject"], report_text) else r.FAILED
    addresses, detector, action = _text_recipients(msg, head, findings, excluded, action)
    if not addresses:
        attached = _attached_bounce(msg, nesting)
        if attached is not None:
            return attached
        if context.original_to and context.original_to.lower() not in excluded:
            addresses, detector = [context.original_to], "quoted original"
        elif subject_address := _subject_recipient(common["subject"], excluded):
            addresses, detector = [subject_address], "subject"
    if not addresses:
        item = _classified(
            address=None,
            action=action,
            status="",
            diagnostic=context.reply,
            remote_mta=context.remote_mta,
            context=report_text[:2000],
        )
        common["notes"] = (*common["notes"], "no recipient found")
        return r.FeedbackReport(kind=r.BOUNCE, recipients=(item,), detector="text", **common)
    recipients = [
        _text_recipient(address, action, len(addresses), context) for address in addresses
    ]
    return r.FeedbackReport(
        kind=r.BOUNCE, recipients=tuple(recipients), detector=detector, **common
    )


@dataclass(frozen=True)
class _Context:
    """What the text around the recipients says, for filling in their details."""

    report_text: str
    findings: dict[str, TextFinding]
    reply: str  # the first SMTP reply of the whole report
    remote_mta: str
    original_to: str


def _text_recipients(
    msg: Message,
    head: bytes | None,
    findings: list[TextFinding],
    excluded: set[str],
    action: str,
) -> tuple[list[str], str, str]:
    """(addresses, detector, action) of a non-standard bounce."""
    failed_header = [
        match.group(1) for match in ADDRESS.finditer(header_text(msg, "X-Failed-Recipients"))
    ]
    if failed_header:
        return list(dict.fromkeys(failed_header))[:MAX_FINDINGS], "X-Failed-Recipients", action
    if findings:
        return list(dict.fromkeys(item.address for item in findings)), "text", action
    temporary, permanent = _flufl_recipients(head)
    candidates = [
        address
        for address in [*permanent, *temporary]
        if address.lower() not in excluded and not is_system_address(address)
    ]
    if candidates and temporary and not permanent:
        action = r.DELAYED
    return list(dict.fromkeys(candidates))[:MAX_FINDINGS], "flufl.bounce", action


def _text_recipient(address: str, action: str, count: int, context: _Context) -> r.RecipientReport:
    text = context.findings.get(address.lower())
    if text is None:
        # named by a header or flufl.bounce: read what the text says next to it
        lines = _lines_of(context.report_text, address)
        if lines:
            text = TextFinding(address, 1, "", lines=lines)
            describe(context.report_text, [text])
    diagnostic = (text.diagnostic if text else "") or (context.reply if count == 1 else "")
    return _classified(
        address=address,
        action=action,
        status="",
        diagnostic=diagnostic,
        remote_mta=(text.remote_mta if text else "") or context.remote_mta,
        context=context.report_text[:2000],
    )


def _subject_recipient(subject: str, excluded: set[str]) -> str:
    """The one address a bounce's subject names ("Undeliverable mail to x@example.org"),
    when its text and quoted original name none."""
    if not _BOUNCE_SUBJECT.search(subject):
        return ""
    found = {
        match.group(1)
        for match in ADDRESS.finditer(subject)
        if match.group(1).lower() not in excluded and not is_system_address(match.group(1))
    }
    return found.pop() if len(found) == 1 else ""


def _lines_of(text: str, address: str) -> list[int]:
    lowered = address.lower()
    return [index for index, line in enumerate(text.split("\n")) if lowered in line.lower()]
