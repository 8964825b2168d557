"""The anymail transport, through anymail's test backend (an ESP API is the one place
where a stand-in replaces the real thing). Answers are chosen per message with anymail's
own pre_send signal, which the test backend honours through `anymail_test_response`."""

import pytest
import requests
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from anymail.signals import pre_send
from django.core import mail

from sending.transports import transport_for, transports_close
from sending.transports.anymail import AnymailTransport
from sending.transports.base import Envelope, TransportConfigError

TEST_BACKEND = "anymail.backends.test.EmailBackend"

MESSAGE = (
    b"DKIM-Signature: v=1; a=rsa-sha256; d=brand.example; s=s1; b=abc\r\n"
    b"From: Brand News <news@brand.example>\r\n"
    b"To: Jane Doe <jane@example.com>\r\n"
    b"Reply-To: help@brand.example\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9_news?=\r\n"
    b"Message-ID: <7.abc@brand.example>\r\n"
    b"List-Unsubscribe: <https://esp.example/u/abc>, <mailto:u+abc@brand.example>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Feedback-ID: 7:12:campaign:esp\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=C3=A9 for Jane\r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"<p>Caf=C3=A9 for <b>Jane</b></p>\r\n"
    b"--b1--\r\n"
)


def envelope(number: int, recipient: str = "jane@example.com") -> Envelope:
    return Envelope(
        delivery_id=number,
        mail_from=f"b+{number}@bounces.brand.example",
        recipient=recipient,
        message=MESSAGE
        if recipient == "jane@example.com"
        else MESSAGE.replace(b"Jane Doe <jane@example.com>", recipient.encode()),
    )


@pytest.fixture
def esp():
    made = []

    def make(backend: str = TEST_BACKEND) -> AnymailTransport:
        transport = AnymailTransport(backend=backend)
        made.append(transport)
        return transport

    mail.outbox = []
    yield make
    for transport in made:
        transport.close()


@pytest.fixture
def answers():
    """recipient -> an anymail status name, or an AnymailAPIError to raise."""
    table: dict[str, object] = {}

    def receiver(sender, message, esp_name, **kwargs):
        answer = table.get(message.to[0].rpartition("<")[2].rstrip(">"))
        if isinstance(answer, AnymailAPIError):
            message.anymail_test_response = answer
        elif answer is not None:
            status = AnymailRecipientStatus(message_id="esp-1", status=answer)
            message.anymail_test_response = {"recipient_status": {message.to[0]: status}}

    pre_send.connect(receiver, weak=False)
    yield table
    pre_send.disconnect(receiver)


def api_error(status: int) -> AnymailAPIError:
    response = requests.Response()
    response.status_code, response.reason, response._content = status, "Nope", b"{}"
    return AnymailAPIError("The ESP said no", status_code=status, response=response)


def test_the_message_reaches_the_esp_with_its_fields_and_headers(esp):
    results = esp().send_many([envelope(7)])

    assert results[0].state == "sent"
    assert results[0].remote_host == "anymail:Test"
    sent = mail.outbox[0]
    assert sent.subject == "Café news"
    assert sent.from_email == "Brand News <news@brand.example>"
    assert sent.to == ["Jane Doe <jane@example.com>"]
    assert sent.reply_to == ["help@brand.example"]
    assert sent.body.strip() == "Café for Jane"
    assert sent.alternatives[0][0].strip() == "<p>Café for <b>Jane</b></p>"
    headers = sent.anymail_test_params["extra_headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith("<https://esp.example/u/abc>")
    assert headers["Feedback-ID"] == "7:12:campaign:esp"
    assert "DKIM-Signature" not in headers  # the ESP signs what it sends
    assert sent.anymail_test_params["metadata"] == {"delivery_id": "7"}


@pytest.mark.parametrize(
    ("status", "state", "bounce_class"),
    [
        ("sent", "sent", ""),
        ("queued", "sent", ""),
        ("unknown", "sent", ""),
        ("invalid", "failed", "hard"),
        ("rejected", "bounced", "hard"),
        ("failed", "deferred", ""),
    ],
)
def test_anymail_statuses_become_results(esp, answers, status, state, bounce_class):
    answers["jane@example.com"] = status

    result = esp().send_many([envelope(1)])[0]

    assert (result.state, result.bounce_class) == (state, bounce_class)
    assert status in result.response
    assert "esp-1" in result.response


def test_one_api_error_does_not_cost_the_others_their_results(esp, answers):
    answers["b@example.com"] = api_error(503)
    answers["c@example.com"] = api_error(400)
    batch = [
        envelope(1, "a@example.com"),
        envelope(2, "b@example.com"),
        envelope(3, "c@example.com"),
    ]

    results = esp().send_many(batch)

    assert [r.state for r in results] == ["sent", "deferred", "failed"]
    assert "ESP API error" in results[1].response
    assert "refused the message" in results[2].response


def test_refused_credentials_raise_when_nothing_was_handed_over(esp, answers):
    answers["a@example.com"] = api_error(401)

    with pytest.raises(TransportConfigError, match="credentials"):
        esp().send_many([envelope(1, "a@example.com"), envelope(2, "b@example.com")])


def test_refused_credentials_after_a_sent_message_defer_the_rest(esp, answers):
    answers["b@example.com"] = api_error(401)
    batch = [
        envelope(1, "a@example.com"),
        envelope(2, "b@example.com"),
        envelope(3, "c@example.com"),
    ]

    results = esp().send_many(batch)

    assert [r.state for r in results] == ["sent", "deferred", "deferred"]
    assert "credentials" in results[2].response


def test_a_backend_that_cannot_be_loaded_is_a_configuration_error(esp):
    with pytest.raises(TransportConfigError, match="nope"):
        esp("anymail.backends.nope.EmailBackend").send_many([envelope(1)])


def test_an_empty_backend_setting_is_a_configuration_error(settings):
    settings.SENDING_TRANSPORT = "anymail"
    settings.SENDING_ANYMAIL_BACKEND = ""
    with pytest.raises(TransportConfigError, match="SENDING_ANYMAIL_BACKEND"):
        transport_for(None)


def test_transport_for_builds_the_anymail_transport_from_settings(settings):
    settings.SENDING_TRANSPORT = "anymail"
    settings.SENDING_ANYMAIL_BACKEND = TEST_BACKEND
    mail.outbox = []
    try:
        transport = transport_for(None)
        assert transport.name == "anymail"
        assert transport.send_many([envelope(1)])[0].state == "sent"
        assert len(mail.outbox) == 1
    finally:
        transports_close()
