"""ESP webhooks through anymail's real views and URLs: payloads shaped like Postmark's JSON,
Mailgun's signed JSON and SendGrid's event array. Unauthenticated or forged posts record
nothing; a redelivered event is acted on once."""

import base64
import hashlib
import hmac
import json

import pytest
from django.test import Client
from django.urls import reverse

from contacts.models import Contact, Subscription, Suppression
from sending.models import Delivery, FeedbackEvent
from tests.sending.feedback.test_services import DOMAIN, make_delivery

pytestmark = pytest.mark.django_db

SECRET = "hooks:s3cret-pass"
SIGNING_KEY = "key-mailgun-test-signing"
State = Delivery.State


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}


def _auth(secret: str = SECRET) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def _post(client: Client, esp: str, payload, **extra):
    return client.post(
        reverse(f"anymail:{esp}_tracking_webhook"),
        data=json.dumps(payload),
        content_type="application/json",
        **extra,
    )


def postmark_bounce(delivery: Delivery, *, bounce_id: int = 4323372036854775807, **fields):
    return {
        "RecordType": "Bounce",
        "ID": bounce_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"delivery_id": str(delivery.pk)},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, "
        "mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": delivery.address,
        "From": f"hello@{DOMAIN}",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Spring",
        **fields,
    }


def mailgun_event(delivery: Delivery, *, token: str, key: str = SIGNING_KEY, **event_data):
    timestamp = "1764410000"
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "id": "CPgfbmQMTCKtHW6uIWtuVe",
            "timestamp": 1764409990.375624,
            "log-level": "error",
            "recipient": delivery.address,
            "recipient-domain": delivery.address.partition("@")[2],
            "message": {"headers": {"message-id": "20261129.1.abc@news.shop.example"}},
            "user-variables": {"delivery_id": str(delivery.pk)},
            "tags": [],
            **event_data,
        },
    }


# --- authentication -------------------------------------------------------------------------


def test_postmark_without_basic_auth_is_refused_and_records_nothing(client):
    delivery = make_delivery()
    response = _post(client, "postmark", postmark_bounce(delivery))
    wrong = _post(client, "postmark", postmark_bounce(delivery), **_auth("hooks:guess"))
    assert response.status_code == 400
    assert wrong.status_code == 400
    assert not FeedbackEvent.objects.exists()
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


def test_webhooks_are_refused_while_no_secret_is_set(client, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    delivery = make_delivery()
    response = _post(client, "mailgun", mailgun_event(delivery, token="t" * 50, event="delivered"))
    assert response.status_code == 403
    assert not FeedbackEvent.objects.exists()


def test_mailgun_forged_signature_is_refused_and_records_nothing(client):
    delivery = make_delivery()
    forged = mailgun_event(delivery, token="f" * 50, key="not-the-key", event="complained")
    response = _post(client, "mailgun", forged, **_auth())
    assert response.status_code == 400
    assert not FeedbackEvent.objects.exists()
    assert not Suppression.objects.exists()


# --- events ---------------------------------------------------------------------------------


def test_postmark_hard_bounce_posted_twice_is_acted_on_once(client):
    delivery = make_delivery()
    payload = postmark_bounce(delivery)
    for _ in range(2):
        assert _post(client, "postmark", payload, **_auth()).status_code == 200

    event = FeedbackEvent.objects.get()
    assert (event.kind, event.bounce_class, event.source) == ("bounce", "hard", "anymail:postmark")
    assert event.event_id == "4323372036854775807"
    assert event.status == "5.1.1"
    assert Suppression.objects.filter(workspace=delivery.workspace).count() == 1
    delivery.refresh_from_db()
    assert delivery.state == State.BOUNCED
    assert delivery.bounce_class == "hard"
    assert Contact.objects.get(pk=delivery.contact_id).status == Contact.Status.BOUNCED


def test_mailgun_signed_complaint_is_recorded_once(client):
    delivery = make_delivery()
    payload = mailgun_event(
        delivery, token="a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f", event="complained"
    )
    for _ in range(2):
        assert _post(client, "mailgun", payload, **_auth()).status_code == 200

    event = FeedbackEvent.objects.get()
    assert event.kind == FeedbackEvent.Kind.COMPLAINT
    assert event.source == "anymail:mailgun"
    assert Delivery.objects.get(pk=delivery.pk).complained_at is not None
    assert Suppression.objects.get(workspace=delivery.workspace).reason == "complaint"
    contact = Contact.objects.get(pk=delivery.contact_id)
    assert contact.status == Contact.Status.COMPLAINED
    assert not Subscription.objects.filter(contact=contact, status="subscribed").exists()


def test_mailgun_temporary_failure_is_a_deferral(client):
    delivery = make_delivery()
    payload = mailgun_event(
        delivery,
        token="d" * 50,
        event="failed",
        severity="temporary",
        reason="generic",
        **{
            "delivery-status": {
                "code": 421,
                "message": "4.7.0 Our system has detected an unusual rate of unsolicited mail",
                "description": "",
            }
        },
    )
    assert _post(client, "mailgun", payload, **_auth()).status_code == 200
    event = FeedbackEvent.objects.get()
    assert event.kind == FeedbackEvent.Kind.DEFERRAL
    assert event.bounce_class == "block"
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT
    assert not Suppression.objects.exists()


def test_postmark_delivery_events_without_an_id_are_recorded_once(client):
    delivery = make_delivery()
    payload = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": delivery.address,
        "Tag": "",
        "DeliveredAt": "2026-11-29T09:01:02Z",
        "Details": "250 2.0.0 OK",
        "Metadata": {"delivery_id": str(delivery.pk)},
    }
    for _ in range(2):
        assert _post(client, "postmark", payload, **_auth()).status_code == 200
    event = FeedbackEvent.objects.get()
    assert event.kind == FeedbackEvent.Kind.DELIVERED
    assert event.event_id.startswith("sha256:")


# anymail no longer supports SendGrid officially; its webhook view still works and warns.
@pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")
def test_sendgrid_event_array_blocks_unsubscribes_and_drops(client):
    blocked = make_delivery(address="blocked@mail.test")
    leaving = make_delivery(campaign=blocked.campaign, address="leaving@mail.test")
    invalid = make_delivery(campaign=blocked.campaign, address="invalid@mail.test")
    events = [
        {
            "email": blocked.address,
            "timestamp": 1764409990,
            "event": "bounce",
            "type": "blocked",
            "reason": "550 5.7.1 Service unavailable; client host blocked using Spamhaus",
            "status": "5.7.1",
            "sg_event_id": "sg-bounce-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "delivery_id": str(blocked.pk),
        },
        {
            "email": leaving.address,
            "timestamp": 1764409991,
            "event": "unsubscribe",
            "sg_event_id": "sg-unsub-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.1",
            "delivery_id": str(leaving.pk),
        },
        {
            "email": invalid.address,
            "timestamp": 1764409992,
            "event": "dropped",
            "reason": "Invalid",
            "sg_event_id": "sg-drop-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.2",
            "delivery_id": str(invalid.pk),
        },
    ]
    for _ in range(2):
        assert _post(client, "sendgrid", events, **_auth()).status_code == 200

    by_address = {event.address: event for event in FeedbackEvent.objects.all()}
    assert len(by_address) == 3
    assert FeedbackEvent.objects.count() == 3
    assert by_address[blocked.address].bounce_class == "block"
    assert by_address[leaving.address].kind == FeedbackEvent.Kind.UNSUBSCRIBE
    assert by_address[invalid.address].kind == FeedbackEvent.Kind.REJECTED
    assert by_address[invalid.address].bounce_class == "hard"
    assert dict(
        Suppression.objects.filter(workspace=blocked.workspace).values_list("email", "reason")
    ) == {"leaving@mail.test": "unsubscribed", "invalid@mail.test": "hard_bounce"}
    assert Contact.objects.get(pk=blocked.contact_id).status == Contact.Status.ACTIVE


def test_an_event_whose_recipient_is_not_the_deliverys_is_ignored(client):
    delivery = make_delivery()
    stranger = make_delivery(address="someone@else.test")  # another workspace
    payload = postmark_bounce(delivery, Email=stranger.address)
    assert _post(client, "postmark", payload, **_auth()).status_code == 200
    unknown_id = postmark_bounce(delivery, bounce_id=7, Metadata={"delivery_id": "999999999"})
    assert _post(client, "postmark", unknown_id, **_auth()).status_code == 200
    assert not FeedbackEvent.objects.exists()
    assert not Suppression.objects.exists()


def test_a_bounce_for_a_delivery_still_in_flight_is_refused_until_it_is_recorded(client):
    delivery = make_delivery(state=State.IN_FLIGHT)
    quiet = Client(raise_request_exception=False)
    response = _post(quiet, "postmark", postmark_bounce(delivery), **_auth())
    assert response.status_code == 500  # the ESP delivers it again later
    assert not FeedbackEvent.objects.exists()

    Delivery.objects.filter(pk=delivery.pk).update(state=State.SENT, lease_token=None)
    assert _post(client, "postmark", postmark_bounce(delivery), **_auth()).status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).state == State.BOUNCED
