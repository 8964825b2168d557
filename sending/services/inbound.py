"""Stored inbound mail, read and acted on once: a `mailto:` unsubscribe by its envelope
address, anything else through the parser (sending/feedback/parse.py) and the delivery
that the report names (sending/services/feedback.py records what it says).

The listener stores each message with `inbound_store` and rings the task's bell once;
after that only the sweep (`inbound_sweep`) hands a `received` row over again, when its
`next_attempt_at` has come. Each attempt is committed (attempt_count, next_attempt_at a
back-off later) before the message is read, so a worker killed while reading it (a hard
time limit, out of memory) leaves a row the sweep brings back later, and a message that
kills INBOUND_MAX_UNFINISHED attempts in a row fails for the operator. A bounce for a
delivery the pipeline is still sending waits for the sweep; any other failure stays on the
row for the operator (`inbound_reprocess`, `inbound_ignore`), never retried in a loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import User
from sending import verp
from sending.feedback import report as reports
from sending.feedback.parse import feedback_parse
from sending.models import Delivery, FeedbackEvent, InboundMessage
from sending.services.feedback import (
    INBOUND,
    SENDING_STATES,
    DeliveryBusy,
    bounce_record,
    complaint_record,
    deferral_record,
    delivered_record,
    delivery_for_feedback,
    text_clip,
    text_safe,
    unsubscribe_record,
)

logger = logging.getLogger(__name__)

State = Delivery.State
Status = InboundMessage.Status
BounceClass = FeedbackEvent.BounceClass

MAILTO_UNSUBSCRIBE_SOURCE = "Unsubscribe by email (List-Unsubscribe mailto)"
# ARF feedback types that are a recipient's complaint ("" when a report omits it);
# not-spam, auth-failure (DMARC failure reports) and the like are not.
COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other", "")
_NEVER_SENT = (State.QUEUED, State.HOLDING, State.SKIPPED)
# A message whose delivery stays in flight this many attempts is given up for review.
INBOUND_MAX_WAITS = 30
# Attempts in a row that never finished (the worker killed while reading the message)
# after which the row fails for the operator instead of coming back.
INBOUND_MAX_UNFINISHED = 5
# The longest the sweep waits before handing a row over again.
INBOUND_BACKOFF_MAX_SECONDS = 3600
# Rows re-enqueued per sweep: a backlog drains through the queue, not in one burst.
INBOUND_SWEEP_LIMIT = 500
# What the parser notes when the message a report quotes is a bounce (parse.py).
LOOP_NOTE = "the quoted original is itself a bounce"
# Written when an attempt starts, replaced when it ends: still there, the attempt died.
_UNFINISHED = re.compile(r"^Attempt (\d+) in a row did not finish")
_HEAD_BYTES = 64 * 1024


@dataclass
class _Found:
    delivery: Delivery | None
    by_verp: bool = False
    notes: tuple[str, ...] = ()


def _backoff(attempt_count: int) -> dt.timedelta:
    """How long the sweep leaves a row after its attempt_count-th attempt started."""
    seconds = settings.INBOUND_SWEEP_SECONDS * 2 ** max(attempt_count - 1, 0)
    return dt.timedelta(seconds=min(seconds, INBOUND_BACKOFF_MAX_SECONDS))


def _enqueue(inbound_id: int) -> None:
    from sending.tasks import inbound_process_task

    try:
        inbound_process_task.delay(inbound_id)
    except Exception:
        # Stored and committed: the sweep hands it over from next_attempt_at.
        logger.exception("mailin: #%s stored but not enqueued", inbound_id)


def inbound_store(
    *, peer: str, helo: str, mail_from: str, recipients: list[str], size: int, raw: bytes
) -> InboundMessage:
    """Commit one message the listener accepted (before it answers 250), then ring the
    task's bell once; if that ring is lost, the sweep hands the row over from
    next_attempt_at."""
    now = timezone.now()
    with transaction.atomic():
        inbound = InboundMessage.objects.create(
            received_at=now,
            next_attempt_at=now + dt.timedelta(seconds=settings.INBOUND_SWEEP_SECONDS),
            peer=peer,
            helo=helo,
            mail_from=mail_from,
            recipients=recipients,
            size=size,
            raw=raw,
        )
        transaction.on_commit(lambda: _enqueue(inbound.pk))
    return inbound


def _forged(addresses: list[str]) -> list[str]:
    """Notes on envelope addresses shaped like ours whose token does not verify."""
    return [
        f"{address} is not a genuine VERP address"
        for address in addresses
        if str(address).strip().strip("<>").lower().startswith(("bounces+", "unsubscribe+"))
        and verp.verp_read(str(address)) is None
    ]


def _envelope_find(inbound: InboundMessage) -> _Found | None:
    """The delivery the envelope's VERP bounces address names (None: no genuine one)."""
    for address in inbound.recipients:
        delivery_id = verp.verp_read(str(address), local=verp.BOUNCES)
        if delivery_id is not None:
            delivery = delivery_for_feedback(delivery_id)
            notes = () if delivery else (f"{address} names delivery {delivery_id}, not found",)
            return _Found(delivery, by_verp=True, notes=notes)
    return None


def _delivery_find(
    inbound: InboundMessage, report: reports.FeedbackReport, envelope: _Found | None
) -> _Found:
    """The delivery a report is about: the envelope's VERP address, else an address of
    ours quoted in the report, else the original Message-ID."""
    if envelope is not None:
        return envelope
    notes = _forged(inbound.recipients)
    for address in report.verp_addresses:
        delivery_id = verp.verp_read(address)
        if delivery_id is not None:
            return _Found(delivery_for_feedback(delivery_id), by_verp=True, notes=tuple(notes))
    message_id = report.original_message_id.strip().strip("<>")
    if message_id:
        matches = list(
            Delivery.objects.select_related("campaign", "contact").filter(
                message_id__in=[f"<{message_id}>", message_id]
            )[:2]
        )
        if len(matches) == 1:
            return _Found(matches[0], notes=tuple(notes))
        notes.append(f"Message-ID <{message_id}> matches {len(matches) or 'no'} deliveries")
    return _Found(None, notes=tuple(notes))


def _owner_keep(inbound: InboundMessage, report: reports.FeedbackReport) -> None:
    """Tie a message that is not acted on (an auto-reply, mail not understood, a loop) to
    the delivery a signed address of ours names, for GDPR export and erasure."""
    if inbound.delivery_id is not None:
        return
    for address in report.verp_addresses:
        delivery_id = verp.verp_read(address)
        delivery = delivery_for_feedback(delivery_id) if delivery_id else None
        if delivery is not None:
            inbound.delivery, inbound.workspace_id = delivery, delivery.workspace_id
            return


def _own_message_id(raw: bytes) -> str:
    """The Message-ID header of the inbound message itself ("" when it has none)."""
    head = raw[:_HEAD_BYTES]
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end >= 0:
            head = head[:end]
            break
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(head).get("Message-ID")
    except Exception:  # a header block the email package cannot read: no dedupe key
        return ""
    return text_safe(str(value or "")).strip().strip("<>").strip()


def _event_key(inbound: InboundMessage) -> str:
    """The event id of what this message reports: its own Message-ID with the envelope
    recipients, so that an MTA resending the same bounce (its 250 lost) is recorded once;
    the row's id when it has no Message-ID."""
    message_id = _own_message_id(bytes(inbound.raw))
    if not message_id:
        return str(inbound.pk)
    recipients = ",".join(sorted(str(a).strip().strip("<>").lower() for a in inbound.recipients))
    return "mid:" + hashlib.sha256(f"{message_id}\n{recipients}".encode()).hexdigest()


def _duplicate_note(inbound: InboundMessage, event_id: str) -> None:
    """A report recorded before: from this row (reprocessed) or from an earlier copy."""
    first = (
        FeedbackEvent.objects.filter(source=INBOUND, event_id=event_id)
        .values_list("inbound_message_id", flat=True)
        .first()
    )
    if first is not None and first != inbound.pk:
        inbound.error = (
            f"A copy of inbound #{first} (same Message-ID and recipients): acted on once."
        )


def _mine(
    rows: list[reports.RecipientReport], delivery: Delivery, *, by_verp: bool
) -> reports.RecipientReport | None:
    """The report's line about the delivery: its address, or (when its VERP address named
    the delivery) the only line there is, since forwarding changes the address."""
    address = delivery.address.lower()
    for row in rows:
        if (row.address or "").strip().lower() == address:
            return row
    if by_verp and len(rows) == 1:
        return rows[0]
    return None


def _json_safe(value: Any) -> Any:
    """PostgreSQL's JSON refuses NUL characters, which garbage mail does contain."""
    if isinstance(value, str):
        return text_safe(value)
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _unsubscribe_by_mail(inbound: InboundMessage) -> bool:
    """A mail to a List-Unsubscribe `mailto:` address; False when it is not one."""
    for address in inbound.recipients:
        delivery_id = verp.verp_read(address, local=verp.UNSUBSCRIBE)
        if delivery_id is None:
            continue
        inbound.kind = InboundMessage.Kind.UNSUBSCRIBE
        delivery = delivery_for_feedback(delivery_id)
        if delivery is None:
            inbound.status, inbound.error = Status.UNPARSED, f"No delivery {delivery_id}."
            return True
        inbound.delivery, inbound.workspace_id = delivery, delivery.workspace_id
        unsubscribe_record(
            delivery=delivery,
            consent_source=MAILTO_UNSUBSCRIBE_SOURCE,
            source=INBOUND,
            event_id=_event_key(inbound),
            inbound=inbound,
            occurred_at=inbound.received_at,
        )
        inbound.status = Status.PROCESSED
        return True
    return False


def _inbound_act(inbound: InboundMessage) -> None:
    """Decide and act; sets status, kind, summary, error, delivery and workspace."""
    if _unsubscribe_by_mail(inbound):
        return
    # The envelope names the delivery before anything is read: every row, acted on or
    # not, keeps its delivery and workspace (GDPR export and erasure find it).
    envelope = _envelope_find(inbound)
    if envelope is not None and envelope.delivery is not None:
        inbound.delivery, inbound.workspace_id = envelope.delivery, envelope.delivery.workspace_id

    report = feedback_parse(bytes(inbound.raw))
    inbound.summary = _json_safe(report.as_dict())
    kind = report.kind if report.kind in InboundMessage.Kind.values else reports.UNKNOWN
    inbound.kind = kind
    if kind == reports.AUTO_REPLY:
        _owner_keep(inbound, report)
        inbound.status = Status.IGNORED
        return
    if kind == reports.UNKNOWN:
        _owner_keep(inbound, report)
        inbound.status = Status.UNPARSED
        why = "Not recognised as a bounce, a complaint or an auto-reply."
        inbound.error = "; ".join((why, *_forged(inbound.recipients)))
        return
    if LOOP_NOTE in report.notes:
        # We never send bounces: a report about one is a loop, not about a delivery.
        _owner_keep(inbound, report)
        inbound.status = Status.UNPARSED
        inbound.error = "A report about a bounce (a mail loop): not acted on."
        return
    found = _delivery_find(inbound, report, envelope)
    delivery = found.delivery
    if delivery is None:
        inbound.status = Status.UNPARSED
        inbound.error = "; ".join(("No delivery of ours is named in it.", *found.notes))
        return
    inbound.delivery, inbound.workspace_id = delivery, delivery.workspace_id
    event_id = _event_key(inbound)
    common = {
        "source": INBOUND,
        "event_id": event_id,
        "inbound": inbound,
        "occurred_at": inbound.received_at,
    }
    if kind == reports.DELIVERED:
        delivered_record(delivery=delivery, **common)
        inbound.status = Status.IGNORED
    elif kind == reports.COMPLAINT:
        if report.feedback_type.strip().lower() not in COMPLAINT_TYPES:
            inbound.status = Status.IGNORED
            return
        event = complaint_record(delivery=delivery, feedback_type=report.feedback_type, **common)
        if event is None:
            _duplicate_note(inbound, event_id)
        inbound.status = Status.PROCESSED
    else:
        _bounce_act(inbound, report, delivery, found, common)


def _wait(inbound: InboundMessage, delivery: Delivery) -> None:
    """The bounce beat the pipeline's own record of the send: the sweep brings it back."""
    if inbound.attempt_count < INBOUND_MAX_WAITS:
        inbound.status = Status.RECEIVED
        inbound.error = f"Delivery {delivery.pk} is still being sent; retried by the sweep."
    else:
        inbound.status = Status.UNPARSED
        inbound.error = f"Delivery {delivery.pk} stayed in the pipeline's hands; not acted on."


def _bounce_act(
    inbound: InboundMessage,
    report: reports.FeedbackReport,
    delivery: Delivery,
    found: _Found,
    common: dict,
) -> None:
    if delivery.state in SENDING_STATES:
        _wait(inbound, delivery)
        return
    if delivery.state in _NEVER_SENT:
        inbound.status = Status.UNPARSED
        inbound.error = f"Delivery {delivery.pk} was never sent ({delivery.state})."
        return
    failed = [row for row in report.recipients if row.action == reports.FAILED]
    delayed = [row for row in report.recipients if row.action == reports.DELAYED]
    line = _mine(failed, delivery, by_verp=found.by_verp)
    if line is None and found.by_verp and not failed and not delayed:
        line = reports.RecipientReport(address=None, bounce_class=BounceClass.UNKNOWN)
    if line is not None:
        try:
            event = bounce_record(
                delivery=delivery,
                bounce_class=line.bounce_class or BounceClass.UNKNOWN,
                status=line.status,
                diagnostic=line.diagnostic,
                remote_mta=line.remote_mta,
                rule=line.rule,
                **common,
            )
        except DeliveryBusy:
            # Claimed again (a deferred row's retry) since it was read: checked under lock.
            _wait(inbound, delivery)
            return
        if event is None:
            _duplicate_note(inbound, common["event_id"])
        inbound.status = Status.PROCESSED
        if not (line.address or line.status) and line.bounce_class in ("", BounceClass.UNKNOWN):
            # Truncated, malformed: only the VERP address was read. The delivery bounced
            # (class unknown: nothing suppressed); the message waits for an operator.
            inbound.status = Status.UNPARSED
            inbound.error = (
                f"Nothing but the VERP address could be read: delivery {delivery.pk} is "
                "recorded as bounced, class unknown."
            )
        return
    line = _mine(delayed, delivery, by_verp=found.by_verp and not failed)
    if line is not None:
        event = deferral_record(
            delivery=delivery,
            status=line.status,
            diagnostic=line.diagnostic,
            remote_mta=line.remote_mta,
            rule=line.rule,
            bounce_class=line.bounce_class,
            **common,
        )
        if event is None:
            _duplicate_note(inbound, common["event_id"])
        inbound.status = Status.PROCESSED
        return
    inbound.status = Status.UNPARSED
    inbound.error = f"No recipient of the report is the delivery's address ({delivery.pk})."


def _attempt_start(inbound_id: int) -> int | None:
    """Commit the start of an attempt before the message is read, so that an attempt
    that never finishes is counted: the new attempt_count, or None when the row is not
    `received`, another worker holds it, or too many attempts died (it fails)."""
    with transaction.atomic():
        inbound = (
            InboundMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=inbound_id, status=Status.RECEIVED)
            .defer("raw")
            .first()
        )
        if inbound is None:
            return None
        died = _UNFINISHED.match(inbound.error)
        unfinished = int(died.group(1)) if died else 0
        now = timezone.now()
        if unfinished >= INBOUND_MAX_UNFINISHED:
            logger.error("Inbound message %s: %s attempts died; failed.", inbound.pk, unfinished)
            inbound.status, inbound.processed_at, inbound.next_attempt_at = (
                Status.FAILED,
                now,
                None,
            )
            inbound.error = (
                f"{unfinished} attempts in a row did not finish (the worker was killed, ran "
                "out of memory or timed out): not tried again."
            )
            inbound.save(update_fields=["status", "processed_at", "next_attempt_at", "error"])
            return None
        inbound.attempt_count += 1
        inbound.next_attempt_at = now + _backoff(inbound.attempt_count)
        inbound.error = (
            f"Attempt {unfinished + 1} in a row did not finish (started {now:%Y-%m-%d %H:%M:%S} "
            "UTC)."
        )
        inbound.save(update_fields=["attempt_count", "next_attempt_at", "error"])
        return inbound.attempt_count


def inbound_process(*, inbound_id: int) -> InboundMessage | None:
    """Read one stored message and act on it, once: only a `received` row is taken, under
    a lock that a second worker skips. The attempt is committed before the message is
    read (`_attempt_start`); a failure is kept on the row (status failed) for the
    operator, never retried in a loop. None when the row is gone."""
    attempt = _attempt_start(inbound_id)
    if attempt is None:
        return InboundMessage.objects.filter(pk=inbound_id).first()
    with transaction.atomic():
        inbound = (
            InboundMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=inbound_id, status=Status.RECEIVED, attempt_count=attempt)
            .first()
        )
        if inbound is None:  # another worker took it over in between
            return InboundMessage.objects.filter(pk=inbound_id).first()
        inbound.error = ""
        try:
            with transaction.atomic():
                _inbound_act(inbound)
        except Exception as error:
            logger.exception("Inbound message %s could not be processed.", inbound.pk)
            inbound.status = Status.FAILED
            inbound.error = text_clip(f"{type(error).__name__}: {error}", 2000)
        inbound.error = text_clip(inbound.error, 2000)
        now = timezone.now()
        waiting = inbound.status == Status.RECEIVED
        inbound.processed_at = None if waiting else now
        inbound.next_attempt_at = now + _backoff(inbound.attempt_count) if waiting else None
        fields = ["status", "kind", "summary", "error", "processed_at", "next_attempt_at"]
        try:
            with transaction.atomic():
                inbound.save(update_fields=[*fields, "workspace", "delivery"])
        except (DatabaseError, ValueError) as error:
            # What was read cannot be stored: the row fails on its own, or the sweep would
            # bring it back forever.
            logger.exception("Inbound message %s: its result could not be saved.", inbound.pk)
            inbound.status, inbound.summary, inbound.processed_at = (
                Status.FAILED,
                {},
                timezone.now(),
            )
            inbound.next_attempt_at = None
            inbound.error = text_clip(f"Saving the result failed: {type(error).__name__}", 2000)
            inbound.save(update_fields=fields)
    if inbound.status != Status.RECEIVED:
        logger.info(
            "Inbound message %s: %s %s (delivery %s) %s",
            inbound.pk,
            inbound.status,
            inbound.kind,
            inbound.delivery_id,
            inbound.error,
        )
    return inbound


def _due(now: dt.datetime) -> QuerySet[InboundMessage]:
    """Received rows whose next_attempt_at has come (rows stored without one: once
    INBOUND_SWEEP_SECONDS old). Failed rows wait for an operator."""
    before = now - dt.timedelta(seconds=settings.INBOUND_SWEEP_SECONDS)
    return InboundMessage.objects.filter(status=Status.RECEIVED).filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, received_at__lt=before)
    )


def inbound_ids_due(*, limit: int = INBOUND_SWEEP_LIMIT) -> list[int]:
    """Rows the sweep would hand over now (a lost enqueue, a killed worker, a delivery
    that was in flight), oldest first."""
    return list(_due(timezone.now()).order_by("received_at").values_list("pk", flat=True)[:limit])


def inbound_sweep(*, limit: int = INBOUND_SWEEP_LIMIT) -> int:
    """Hand the due rows to a task again, oldest first, each pushed INBOUND_SWEEP_SECONDS
    forward so that the next sweep does not queue it twice; rows a worker holds are
    skipped. The number handed over."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            _due(now)
            .select_for_update(skip_locked=True)
            .order_by("received_at")
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            InboundMessage.objects.filter(pk__in=ids).update(
                next_attempt_at=now + dt.timedelta(seconds=settings.INBOUND_SWEEP_SECONDS)
            )
            transaction.on_commit(lambda: [_enqueue(inbound_id) for inbound_id in ids])
    return len(ids)


@transaction.atomic
def inbound_reprocess(*, inbound: InboundMessage, acting_user: User | None) -> InboundMessage:
    """An operator's second try (a failed row, or an unparsed one after a parser fix): back
    to `received` and queued. Events already recorded from it are not recorded again."""
    locked = InboundMessage.objects.select_for_update().defer("raw").get(pk=inbound.pk)
    previous = locked.status
    locked.status, locked.processed_at = Status.RECEIVED, None
    locked.next_attempt_at = timezone.now() + dt.timedelta(seconds=settings.INBOUND_SWEEP_SECONDS)
    locked.save(update_fields=["status", "processed_at", "next_attempt_at"])
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="inbound.reprocessed",
        target=locked,
        details={"previous_status": previous, "error": locked.error[:300]},
    )
    transaction.on_commit(lambda: _enqueue(locked.pk))
    return locked


@transaction.atomic
def inbound_ignore(*, inbound_ids: list[int], acting_user: User | None) -> int:
    """An operator sets messages aside (reviewed, nothing to do): ignored, with an audit
    entry each. The number changed."""
    rows = list(
        InboundMessage.objects.select_for_update(of=("self",))
        .select_related("workspace")
        .filter(pk__in=list(inbound_ids))
        .exclude(status=Status.IGNORED)
        .defer("raw", "summary")
    )
    now = timezone.now()
    for row in rows:
        previous = row.status
        row.status, row.processed_at, row.next_attempt_at = Status.IGNORED, now, None
        row.save(update_fields=["status", "processed_at", "next_attempt_at"])
        audit_record(
            workspace=row.workspace,
            actor=acting_user,
            verb="inbound.ignored",
            target=row,
            details={"previous_status": previous, "error": row.error[:300]},
        )
    return len(rows)
