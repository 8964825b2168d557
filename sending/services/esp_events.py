"""ESP events (anymail's normalised tracking events) acted on like the same feedback by
mail: delivered, bounced, deferred, complained, unsubscribed and rejected, once per event
(ESPs redeliver: deduped on the ESP's event id). The webhook's signal receiver is in
sending/webhooks.py."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sending.classify import enhanced_code_of, feedback_class_of, status_refined
from sending.models import Delivery, FeedbackEvent
from sending.services import feedback
from sending.services.feedback import DeliveryBusy

logger = logging.getLogger(__name__)

Kind = FeedbackEvent.Kind
BounceClass = FeedbackEvent.BounceClass

__all__ = ["DeliveryBusy", "esp_bounce_class", "esp_event_record"]


# anymail's normalised reject reasons that decide the class by themselves.
_REASON_CLASSES = {
    "invalid": (BounceClass.HARD, "ESP: invalid address"),
    "blocked": (BounceClass.BLOCK, "ESP: blocked"),
    "spam": (BounceClass.BLOCK, "ESP: spam"),
    "timed_out": (BounceClass.SOFT, "ESP: timed out"),
}


_WEBHOOK_KINDS = ("delivered", "bounced", "deferred", "complained", "unsubscribed", "rejected")


def esp_bounce_class(*, reject_reason: str | None, text: str) -> tuple[str, str, str]:
    """(class, rule, enhanced code) of an ESP's bounce or refusal: its reject reason when
    that says it all, else the words through the same classifier as DSNs, else unknown."""
    enhanced = enhanced_code_of(text)
    if reject_reason in _REASON_CLASSES:
        bounce_class, rule = _REASON_CLASSES[reject_reason]
        return bounce_class, rule, enhanced
    if text.strip():
        bounce_class, rule = feedback_class_of(enhanced=enhanced, text=text)
        return bounce_class, rule, status_refined(enhanced, text)
    return BounceClass.UNKNOWN, "", enhanced


def _esp_event_id(*, esp: str, event: Any, delivery: Delivery) -> str:
    """The ESP's event id, else a digest of what identifies the event: ESPs redeliver."""
    if event.event_id:
        return str(event.event_id)
    when = event.timestamp.isoformat() if event.timestamp else ""
    if not when:
        try:
            when = json.dumps(event.esp_event, sort_keys=True, default=str)
        except (TypeError, ValueError):
            when = repr(event.esp_event)
    key = f"{esp}|{event.event_type}|{delivery.pk}|{when}"
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _esp_delivery(event: Any) -> Delivery | None:
    """Our delivery of an ESP's event: the metadata our transport set, checked against the
    event's recipient, so a guessed id never reaches another address."""
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    raw_id = str(metadata.get("delivery_id", "")).strip()
    if not raw_id.isdigit() or not event.recipient:
        return None
    delivery = feedback.delivery_for_feedback(int(raw_id))
    if delivery is None or delivery.address.lower() != str(event.recipient).strip().lower():
        return None
    return delivery


def esp_event_record(*, event: Any, esp_name: str) -> FeedbackEvent | None:
    """Act on one anymail tracking event (delivered, bounced, deferred, complained,
    unsubscribed, rejected) like on the same feedback by mail; once per event. Events of
    mail that is not ours, and other event types, are ignored."""
    if event.event_type not in _WEBHOOK_KINDS:
        return None
    delivery = _esp_delivery(event)
    if delivery is None:
        logger.info(
            "%s %s event for %s names no delivery of ours; ignored.",
            esp_name,
            event.event_type,
            event.recipient,
        )
        return None
    source = f"anymail:{esp_name}".lower()
    common = {
        "delivery": delivery,
        "source": source,
        "event_id": _esp_event_id(esp=source, event=event, delivery=delivery),
        "occurred_at": event.timestamp,
    }
    text = " ".join(part for part in (event.mta_response, event.description) if part)
    if event.event_type == "delivered":
        return feedback.delivered_record(**common, diagnostic=text)
    if event.event_type == "complained":
        return feedback.complaint_record(**common, feedback_type="abuse")
    if event.event_type == "unsubscribed" or (
        event.event_type == "rejected" and event.reject_reason == "unsubscribed"
    ):
        return feedback.unsubscribe_record(
            **common, consent_source=f"Unsubscribe reported by {esp_name}"
        )
    bounce_class, rule, enhanced = esp_bounce_class(reject_reason=event.reject_reason, text=text)
    if event.event_type == "deferred":
        return feedback.deferral_record(
            **common, status=enhanced, diagnostic=text, rule=rule, bounce_class=bounce_class
        )
    # The ESP may answer before the pipeline recorded the send: bounce_record raises
    # DeliveryBusy under the delivery's lock, anymail answers 500 and the ESP delivers the
    # event again later, when the row can change.
    return feedback.bounce_record(
        **common,
        kind=Kind.REJECTED if event.event_type == "rejected" else Kind.BOUNCE,
        bounce_class=bounce_class,
        status=enhanced,
        diagnostic=text,
        rule=rule,
    )
