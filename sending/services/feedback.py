"""Acting on what comes back: bounces, delays, complaints and unsubscribes, read from stored
inbound mail (sending/services/inbound.py), reported by an ESP's webhook
(sending/services/esp_events.py) or said during the pipeline's SMTP session.

Stored inbound mail is read and routed to these in sending/services/inbound.py.

Every fact becomes one FeedbackEvent; its rule acts once, in the transaction that records
it, so a redelivered webhook or a reprocessed message (same source and event id) changes
nothing twice:

    hard    the address is suppressed and its contact marked bounced
    soft    FEEDBACK_SOFT_BOUNCE_LIMIT bounced deliveries to the address within
            FEEDBACK_SOFT_BOUNCE_DAYS suppress it
    block   counted against the campaign's From domain; the contact is untouched
    unknown recorded only

Actions follow the delivery the report names, never the addresses a report quotes: a
bounce reaches a delivery through its VERP token (signed, so a forged or another
workspace's token names nothing), an address of ours quoted in the report, or the
original Message-ID, and only that delivery's workspace and address are acted on.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Required, TypedDict, Unpack

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import Workspace
from campaigns.models import Campaign
from compliance.services import contact_complaint_record, contact_unsubscribe_by_link
from contacts.models import Contact, Suppression
from contacts.services.suppressions import suppression_add
from sending.classify import bounce_class_of, feedback_class_of
from sending.models import Delivery, FeedbackEvent, InboundMessage
from sending.services.deliveries import Outcome
from sending.services.policy import workspace_complaints_check

logger = logging.getLogger(__name__)

State = Delivery.State
Status = InboundMessage.Status
Kind = FeedbackEvent.Kind
BounceClass = FeedbackEvent.BounceClass

INBOUND = "inbound"  # FeedbackEvent.source of what the inbound listener received
SMTP = "smtp"  # FeedbackEvent.source of a refusal during the pipeline's own SMTP session
# A bounce changes the state of a delivery that left: sent, unknown (lost after DATA) or
# deferred (it stops retrying).
_BOUNCEABLE = (State.SENT, State.UNKNOWN, State.DEFERRED)
# Rows the pipeline is still sending: their bounce waits for the sweep, or recording the
# send outcome would find the row changed under its lease.
SENDING_STATES = (State.CLAIMED, State.IN_FLIGHT)


class DeliveryBusy(Exception):
    """The delivery is still in the pipeline's hands: try the report again later (the
    inbound sweep brings a stored message back; a webhook answers 500, the ESP redelivers)."""


# --- recording events -----------------------------------------------------------------------


def text_safe(value: str) -> str:
    """Text PostgreSQL takes: no NUL, no lone surrogates (bytes a lenient decode kept)."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def text_clip(value: str | None, length: int) -> str:
    return text_safe(value or "")[:length]


def delivery_for_feedback(delivery_id: int) -> Delivery | None:
    """The delivery a VERP token or an ESP's metadata names, with what acting on it needs."""
    return Delivery.objects.select_related("campaign", "contact").filter(pk=delivery_id).first()


class EventOrigin(TypedDict, total=False):
    """Where an event comes from, the same for every kind: its source ("inbound", "smtp",
    "anymail:<esp>"), the source's id of it (dedupe), the stored message it was read
    from, and when it happened."""

    source: Required[str]
    event_id: str
    inbound: InboundMessage | None
    occurred_at: dt.datetime | None


def _event_add(
    *,
    delivery: Delivery,
    kind: str,
    bounce_class: str = "",
    status: str = "",
    diagnostic: str = "",
    remote_mta: str = "",
    rule: str = "",
    feedback_type: str = "",
    sending_domain: str = "",
    **origin: Unpack[EventOrigin],
) -> FeedbackEvent | None:
    """A new event, or None when (source, event_id) was recorded before."""
    event = FeedbackEvent(
        workspace_id=delivery.workspace_id,
        delivery=delivery,
        kind=kind,
        bounce_class=bounce_class,
        rule=text_clip(rule, 100),
        status=text_clip(status, 12),
        diagnostic=text_clip(diagnostic, 1000),
        remote_mta=text_clip(remote_mta, 253),
        feedback_type=text_clip(feedback_type, 30).lower(),
        address=delivery.address,
        sending_domain=sending_domain,
        source=text_clip(origin["source"], 40),
        event_id=text_clip(origin.get("event_id"), 200),
        inbound_message=origin.get("inbound"),
        occurred_at=origin.get("occurred_at") or timezone.now(),
    )
    if not event.event_id:
        event.save()
        return event
    try:
        with transaction.atomic():  # a savepoint: a duplicate leaves the caller's work intact
            event.save()
    except IntegrityError:
        if FeedbackEvent.objects.filter(source=event.source, event_id=event.event_id).exists():
            return None
        raise
    return event


def _contact_of(delivery: Delivery) -> Contact | None:
    """The contact as it is now (a fresh read: the delivery may be an old copy)."""
    if delivery.contact_id is None:
        return None
    return Contact.objects.filter(pk=delivery.contact_id).first()


def _from_domain(campaign: Campaign) -> str:
    return campaign.from_email.rpartition("@")[2].strip().lower().rstrip(">")[:253]


def hard_bounce_apply(*, workspace: Workspace, delivery: Delivery, source: str) -> None:
    """A hard bounce: the address is suppressed in the workspace and an active contact is
    marked bounced. One function for the pipeline's synchronous 5xx and for DSNs."""
    suppression_add(
        workspace=workspace,
        email=delivery.address,
        reason=Suppression.Reason.HARD_BOUNCE,
        source=source[:300],
        acting_user=None,
    )
    if delivery.contact_id:
        # A contact who unsubscribed or complained since keeps that status.
        Contact.objects.filter(pk=delivery.contact_id, status=Contact.Status.ACTIVE).update(
            status=Contact.Status.BOUNCED, updated_at=timezone.now()
        )


def soft_bounces_apply(*, campaign: Campaign, bounces: dict[str, str]) -> list[str]:
    """Suppress each address (address -> last diagnostic) once enough of its deliveries
    soft-bounced lately, in one query for all of them (deliveries, not events: two reports
    of one bounce count once). The addresses suppressed."""
    if not bounces:
        return []
    limit, days = settings.FEEDBACK_SOFT_BOUNCE_LIMIT, settings.FEEDBACK_SOFT_BOUNCE_DAYS
    since = timezone.now() - dt.timedelta(days=days)
    wanted = {address.lower(): address for address in bounces}
    counts = (
        FeedbackEvent.objects.filter(
            workspace_id=campaign.workspace_id,
            kind__in=[Kind.BOUNCE, Kind.REJECTED],
            bounce_class=BounceClass.SOFT,
            occurred_at__gte=since,
        )
        .annotate(address_lower=Lower("address"))
        .filter(address_lower__in=list(wanted))
        .order_by()
        .values("address_lower")
        .annotate(n=Count("delivery_id", distinct=True))
        .filter(n__gte=limit)
    )
    suppressed = []
    for row in counts:
        address = wanted[row["address_lower"]]
        suppression_add(
            workspace=campaign.workspace,
            email=address,
            reason=Suppression.Reason.SOFT_BOUNCES,
            source=(
                f"{row['n']} soft bounces in {days} days; last: {campaign.name}: {bounces[address]}"
            )[:300],
            acting_user=None,
        )
        suppressed.append(address)
    return suppressed


@transaction.atomic
def bounce_record(
    *,
    delivery: Delivery,
    bounce_class: str,
    status: str = "",
    diagnostic: str = "",
    remote_mta: str = "",
    rule: str = "",
    kind: str = Kind.BOUNCE,
    **origin: Unpack[EventOrigin],
) -> FeedbackEvent | None:
    """Record a bounce (or an ESP's refusal: kind rejected) and apply its class's rule;
    None when this event was recorded before. DeliveryBusy while the pipeline holds the
    delivery (claimed or in flight): nothing is recorded, the caller tries again later."""
    bounce_class = bounce_class if bounce_class in BounceClass.values else BounceClass.UNKNOWN
    # Locked: the pipeline's claim of a deferred row, or its record of a send, cannot
    # slip in between this check and the state change below.
    state = (
        Delivery.objects.select_for_update()
        .filter(pk=delivery.pk)
        .values_list("state", flat=True)
        .first()
    )
    if state in SENDING_STATES:
        raise DeliveryBusy(f"Delivery {delivery.pk} is still being sent.")
    campaign = Campaign.objects.select_related("workspace").get(pk=delivery.campaign_id)
    event = _event_add(
        delivery=delivery,
        kind=kind,
        bounce_class=bounce_class,
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        rule=rule,
        sending_domain=_from_domain(campaign),
        **origin,
    )
    if event is None:
        return None
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk, state__in=_BOUNCEABLE).update(
        state=State.BOUNCED,
        bounced_at=event.occurred_at,
        bounce_class=bounce_class,
        last_response=event.diagnostic[:500],
        next_attempt_at=None,
        updated_at=now,
    )
    if bounce_class == BounceClass.HARD:
        hard_bounce_apply(
            workspace=campaign.workspace,
            delivery=delivery,
            source=f"{campaign.name}: {status} {event.diagnostic}",
        )
    elif bounce_class == BounceClass.SOFT:
        soft_bounces_apply(campaign=campaign, bounces={delivery.address: event.diagnostic})
    return event


def deferral_record(
    *,
    delivery: Delivery,
    status: str = "",
    diagnostic: str = "",
    remote_mta: str = "",
    rule: str = "",
    bounce_class: str = "",
    **origin: Unpack[EventOrigin],
) -> FeedbackEvent | None:
    """A delay report: recorded for the delivery's story and the shaping signals only."""
    return _event_add(
        delivery=delivery,
        kind=Kind.DEFERRAL,
        bounce_class=bounce_class if bounce_class in BounceClass.values else "",
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        rule=rule,
        sending_domain=_from_domain(delivery.campaign),
        **origin,
    )


def delivered_record(
    *,
    delivery: Delivery,
    remote_mta: str = "",
    diagnostic: str = "",
    **origin: Unpack[EventOrigin],
) -> FeedbackEvent | None:
    return _event_add(
        delivery=delivery,
        kind=Kind.DELIVERED,
        remote_mta=remote_mta,
        diagnostic=diagnostic,
        **origin,
    )


@transaction.atomic
def complaint_record(
    *,
    delivery: Delivery,
    feedback_type: str = "abuse",
    **origin: Unpack[EventOrigin],
) -> FeedbackEvent | None:
    """A spam complaint: the person leaves every list and the address is suppressed at
    once, even when the contact is gone; None when this event was recorded before."""
    event = _event_add(
        delivery=delivery, kind=Kind.COMPLAINT, feedback_type=feedback_type or "abuse", **origin
    )
    if event is None:
        return None
    Delivery.objects.filter(pk=delivery.pk, complained_at__isnull=True).update(
        complained_at=event.occurred_at, updated_at=timezone.now()
    )
    campaign = Campaign.objects.select_related("workspace").get(pk=delivery.campaign_id)
    contact = _contact_of(delivery)
    contact_complaint_record(
        workspace=campaign.workspace,
        address=delivery.address,
        contact=contact,
        campaign_id=campaign.pk,
        source=f"Spam complaint ({event.feedback_type}) about {campaign.name}, via {event.source}",
    )
    # Too many complaints suspend the workspace's sending.
    workspace_complaints_check(workspace=campaign.workspace)
    return event


@transaction.atomic
def unsubscribe_record(
    *,
    delivery: Delivery,
    consent_source: str,
    **origin: Unpack[EventOrigin],
) -> FeedbackEvent | None:
    """An unsubscribe by email (or reported by an ESP): every list, like RFC 8058's
    one-click POST; with no contact left, the address is still suppressed."""
    event = _event_add(delivery=delivery, kind=Kind.UNSUBSCRIBE, **origin)
    if event is None:
        return None
    contact = _contact_of(delivery)
    if contact is not None:
        contact_unsubscribe_by_link(
            contact=contact,
            contact_list=None,
            campaign_id=delivery.campaign_id,
            source=consent_source,
        )
    else:
        suppression_add(
            workspace=Workspace.objects.get(pk=delivery.workspace_id),
            email=delivery.address,
            reason=Suppression.Reason.UNSUBSCRIBED,
            source=consent_source,
            acting_user=None,
        )
    return event


# --- refusals during the pipeline's own SMTP session ------------------------------------


def smtp_outcomes_record(*, campaign: Campaign, outcomes: list[tuple[Delivery, Outcome]]) -> int:
    """Feedback events for what receivers said during the SMTP session itself, in one bulk
    insert per chunk: each bounce (its class, as the transport classified it) and each
    deferral about us (rate, reputation, policy: class block), so that the soft-bounce
    rule and the per-domain block counts see them like asynchronous reports. Soft bounces
    go through the soft-bounce rule here; hard ones are the pipeline's (hard_bounce_apply).
    The number of events recorded."""
    now = timezone.now()
    sending_domain = _from_domain(campaign)
    events, soft = [], {}
    for delivery, outcome in outcomes:
        if outcome.state == State.BOUNCED and outcome.bounce_class:
            kind, bounce_class = Kind.BOUNCE, outcome.bounce_class
            rule = bounce_class_of(enhanced=outcome.enhanced_code, text=outcome.response)[1]
        elif outcome.state == State.DEFERRED and outcome.smtp_code is not None:
            # A reply from a server (not a connection we could not make): about us or not.
            bounce_class, rule = feedback_class_of(
                enhanced=outcome.enhanced_code,
                text=outcome.response,
                code=outcome.smtp_code,
                delayed=True,
            )
            if bounce_class != BounceClass.BLOCK:
                continue
            kind = Kind.DEFERRAL
        else:
            continue
        if bounce_class not in BounceClass.values:
            bounce_class = BounceClass.UNKNOWN
        code = f"{outcome.smtp_code} " if outcome.smtp_code else ""
        events.append(
            FeedbackEvent(
                workspace_id=delivery.workspace_id,
                delivery_id=delivery.pk,
                kind=kind,
                bounce_class=bounce_class,
                rule=rule[:100],
                status=text_clip(outcome.enhanced_code, 12),
                diagnostic=text_clip(f"{code}{outcome.response}", 1000),
                remote_mta=text_clip(outcome.remote_host, 253),
                address=delivery.address,
                sending_domain=sending_domain,
                source=SMTP,
                occurred_at=outcome.started_at or now,
            )
        )
        if kind == Kind.BOUNCE and bounce_class == BounceClass.SOFT:
            soft[delivery.address] = events[-1].diagnostic
    if not events:
        return 0
    with transaction.atomic():
        FeedbackEvent.objects.bulk_create(events)
        soft_bounces_apply(campaign=campaign, bounces=soft)
    return len(events)
