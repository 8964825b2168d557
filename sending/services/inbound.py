"""Stored inbound mail, read and acted on once: a `mailto:` unsubscribe by its envelope
address, anything else through the parser (sending/feedback/parse.py) and the delivery
that the report names (sending/services/feedback.py records what it says).

A row is `received` until processed; a bounce for a delivery the pipeline is still
sending waits for the sweep (`inbound_ids_due`), and a failure stays on the row for the
operator (`inbound_reprocess`), never retried in a loop.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
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
# A message whose delivery stays in flight this many sweeps is given up for review.
INBOUND_MAX_WAITS = 30
# Rows re-enqueued per sweep: a backlog drains through the queue, not in one burst.
INBOUND_SWEEP_LIMIT = 500


@dataclass
class _Found:
    delivery: Delivery | None
    by_verp: bool = False
    notes: tuple[str, ...] = ()


def _forged(addresses: list[str]) -> list[str]:
    """Notes on envelope addresses shaped like ours whose token does not verify."""
    return [
        f"{address} is not a genuine VERP address"
        for address in addresses
        if str(address).strip().strip("<>").lower().startswith(("bounces+", "unsubscribe+"))
        and verp.verp_read(str(address)) is None
    ]


def _delivery_find(inbound: InboundMessage, report: reports.FeedbackReport) -> _Found:
    """The delivery a report is about: the envelope's VERP address, else an address of
    ours quoted in the report, else the original Message-ID."""
    notes = _forged(inbound.recipients)
    for address in inbound.recipients:
        delivery_id = verp.verp_read(address, local=verp.BOUNCES)
        if delivery_id is not None:
            return _Found(delivery_for_feedback(delivery_id), by_verp=True)
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
            event_id=str(inbound.pk),
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

    report = feedback_parse(bytes(inbound.raw))
    inbound.summary = _json_safe(report.as_dict())
    kind = report.kind if report.kind in InboundMessage.Kind.values else reports.UNKNOWN
    inbound.kind = kind
    if kind == reports.AUTO_REPLY:
        inbound.status = Status.IGNORED
        return
    if kind == reports.UNKNOWN:
        inbound.status = Status.UNPARSED
        why = "Not recognised as a bounce, a complaint or an auto-reply."
        inbound.error = "; ".join((why, *_forged(inbound.recipients)))
        return
    found = _delivery_find(inbound, report)
    delivery = found.delivery
    if delivery is None:
        inbound.status = Status.UNPARSED
        inbound.error = "; ".join(("No delivery of ours is named in it.", *found.notes))
        return
    inbound.delivery, inbound.workspace_id = delivery, delivery.workspace_id
    common = {"source": INBOUND, "inbound": inbound, "occurred_at": inbound.received_at}
    if kind == reports.DELIVERED:
        delivered_record(delivery=delivery, event_id=f"{inbound.pk}", **common)
        inbound.status = Status.IGNORED
    elif kind == reports.COMPLAINT:
        if report.feedback_type.strip().lower() not in COMPLAINT_TYPES:
            inbound.status = Status.IGNORED
            return
        complaint_record(
            delivery=delivery,
            feedback_type=report.feedback_type,
            event_id=f"{inbound.pk}",
            **common,
        )
        inbound.status = Status.PROCESSED
    else:
        _bounce_act(inbound, report, delivery, found, common)


def _bounce_act(
    inbound: InboundMessage,
    report: reports.FeedbackReport,
    delivery: Delivery,
    found: _Found,
    common: dict,
) -> None:
    if delivery.state in SENDING_STATES:
        # The bounce beat the pipeline's own record of the send: the sweep brings it back.
        if inbound.attempt_count < INBOUND_MAX_WAITS:
            inbound.status = Status.RECEIVED
            inbound.error = f"Delivery {delivery.pk} is still being sent; retried by the sweep."
        else:
            inbound.status = Status.UNPARSED
            inbound.error = f"Delivery {delivery.pk} stayed {delivery.state}; not acted on."
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
        bounce_record(
            delivery=delivery,
            bounce_class=line.bounce_class or BounceClass.UNKNOWN,
            status=line.status,
            diagnostic=line.diagnostic,
            remote_mta=line.remote_mta,
            rule=line.rule,
            event_id=f"{inbound.pk}",
            **common,
        )
        inbound.status = Status.PROCESSED
        return
    line = _mine(delayed, delivery, by_verp=found.by_verp and not failed)
    if line is not None:
        deferral_record(
            delivery=delivery,
            status=line.status,
            diagnostic=line.diagnostic,
            remote_mta=line.remote_mta,
            rule=line.rule,
            bounce_class=line.bounce_class,
            event_id=f"{inbound.pk}",
            **common,
        )
        inbound.status = Status.PROCESSED
        return
    inbound.status = Status.UNPARSED
    inbound.error = f"No recipient of the report is the delivery's address ({delivery.pk})."


def inbound_process(*, inbound_id: int) -> InboundMessage | None:
    """Read one stored message and act on it, once: only a `received` row is taken, under
    a lock that a second worker skips. A failure is kept on the row (status failed) for
    the operator, never retried in a loop. None when the row is gone."""
    with transaction.atomic():
        inbound = (
            InboundMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=inbound_id, status=Status.RECEIVED)
            .first()
        )
        if inbound is None:
            return InboundMessage.objects.filter(pk=inbound_id).first()
        inbound.attempt_count += 1
        inbound.error = ""
        try:
            with transaction.atomic():
                _inbound_act(inbound)
        except Exception as error:
            logger.exception("Inbound message %s could not be processed.", inbound.pk)
            inbound.status = Status.FAILED
            inbound.error = text_clip(f"{type(error).__name__}: {error}", 2000)
        inbound.error = text_clip(inbound.error, 2000)
        inbound.processed_at = timezone.now() if inbound.status != Status.RECEIVED else None
        fields = ["status", "kind", "summary", "error", "attempt_count", "processed_at"]
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


def inbound_ids_due(*, limit: int = INBOUND_SWEEP_LIMIT) -> list[int]:
    """Rows still `received` after INBOUND_SWEEP_SECONDS (a lost enqueue, a delivery that
    was in flight), oldest first. Failed rows wait for an operator."""
    before = timezone.now() - dt.timedelta(seconds=settings.INBOUND_SWEEP_SECONDS)
    return list(
        InboundMessage.objects.filter(status=Status.RECEIVED, received_at__lt=before)
        .order_by("received_at")
        .values_list("pk", flat=True)[:limit]
    )


@transaction.atomic
def inbound_reprocess(*, inbound: InboundMessage, acting_user: User | None) -> InboundMessage:
    """An operator's second try (a failed row, or an unparsed one after a parser fix): back
    to `received` and queued. Events already recorded from it are not recorded again."""
    from sending.tasks import inbound_process_task

    locked = InboundMessage.objects.select_for_update().get(pk=inbound.pk)
    previous = locked.status
    locked.status, locked.processed_at = Status.RECEIVED, None
    locked.save(update_fields=["status", "processed_at"])
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="inbound.reprocessed",
        target=locked,
        details={"previous_status": previous, "error": locked.error[:300]},
    )
    transaction.on_commit(lambda: inbound_process_task.delay(locked.pk))
    return locked
