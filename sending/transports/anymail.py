"""The `anymail` transport: hand each message to an ESP's HTTP API through django-anymail,
with the backend named in SENDING_ANYMAIL_BACKEND ("anymail.backends.postmark.EmailBackend";
its credentials in settings.ANYMAIL as anymail documents).

ESP APIs take a message as fields, not as bytes, so the envelope's MIME is read back into
a Django EmailMessage: subject, From, Reply-To, the text and HTML parts, attachments, and
every other header (List-Unsubscribe, List-Unsubscribe-Post, Feedback-ID, Message-ID ...)
as an extra header. Our DKIM-Signature is dropped (the ESP writes the message anew and
signs it itself), and so is the VERP return path: the ESP owns bounce handling, which
comes back through its webhooks. The delivery id travels as anymail metadata
(`delivery_id`), for those webhooks to find the delivery again.

One API call per envelope, each on its own: one refusal never costs the others their
result. anymail's per-recipient status is mapped to a Result: sent/queued/unknown (the
ESP accepted the call) → sent, invalid → failed hard, rejected (the ESP's own suppression
list) → bounced hard, failed → deferred. An API error is deferred, except a refused
request (400/422: failed) and refused credentials (401/403), which are a configuration
error like a backend that cannot be loaded: TransportConfigError when nothing of the call
was handed over yet, else the rest are deferred with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage as MimeMessage
from email.mime.base import MIMEBase
from email.utils import getaddresses
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMultiAlternatives, get_connection

from sending.transports.base import Envelope, Result, TransportConfigError

# Headers that become fields of the EmailMessage, or that the ESP writes itself.
_NOT_COPIED = {
    "subject",
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "dkim-signature",
    "return-path",
    "received",
}

_STATES = {
    "sent": ("sent", ""),
    "queued": ("sent", ""),
    "unknown": ("sent", ""),  # accepted by the API; its per-recipient fate comes by webhook
    "invalid": ("failed", "hard"),
    "rejected": ("bounced", "hard"),
    "failed": ("deferred", ""),
}


def email_from_envelope(envelope: Envelope) -> EmailMultiAlternatives:
    """The envelope's message as a Django EmailMessage for an anymail backend."""
    parsed: MimeMessage = message_from_bytes(envelope.message, policy=policy.default)  # type: ignore[assignment]
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    headers = {
        name: str(value) for name, value in parsed.items() if name.lower() not in _NOT_COPIED
    }
    to_header = str(parsed.get("To", ""))
    named = getaddresses([to_header])
    # The To header's display name is kept when it names this recipient alone.
    same = len(named) == 1 and named[0][1].lower() == envelope.recipient.lower()
    message = EmailMultiAlternatives(
        subject=str(parsed.get("Subject", "")),
        body=text_part.get_content() if text_part is not None else "",
        from_email=str(parsed.get("From", "")),
        to=[to_header if same else envelope.recipient],
        reply_to=[a for _, a in getaddresses([str(parsed["Reply-To"])])]
        if parsed["Reply-To"]
        else None,
        headers=headers,
    )
    if html_part is not None:
        message.attach_alternative(html_part.get_content(), "text/html")
    for part in parsed.iter_attachments():
        content = part.get_payload(decode=True) or b""
        if part.get("Content-ID"):
            inline = MIMEBase(part.get_content_maintype(), part.get_content_subtype())
            inline.set_payload(content)
            inline.add_header("Content-ID", str(part["Content-ID"]))
            inline.add_header("Content-Disposition", "inline", filename=part.get_filename() or "")
            message.attach(inline)
        else:
            message.attach(part.get_filename() or "attachment", content, part.get_content_type())
    message.metadata = {"delivery_id": str(envelope.delivery_id)}  # type: ignore[attr-defined]
    return message


class AnymailTransport:
    """An ESP API through a django-anymail backend; see the module docstring."""

    name = "anymail"

    def __init__(self, *, backend: str) -> None:
        if not backend:
            raise TransportConfigError(
                "SENDING_ANYMAIL_BACKEND is empty: name an anymail backend, "
                "e.g. anymail.backends.postmark.EmailBackend."
            )
        self.backend = backend
        self._connection: Any = None

    @classmethod
    def settings_options(cls) -> dict[str, Any]:
        return {"backend": settings.SENDING_ANYMAIL_BACKEND}

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Result]:
        if not envelopes:
            return []
        connection = self._open()
        results: list[Result] = []
        remote = f"anymail:{getattr(connection, 'esp_name', self.backend)}"
        for position, envelope in enumerate(envelopes):
            try:
                result = self._send_one(connection, envelope, remote)
            except TransportConfigError as error:
                if not any(r.state != "deferred" for r in results):
                    raise
                for rest in envelopes[position:]:
                    results.append(_result(rest, "deferred", f"ESP configuration: {error}"))
                break
            results.append(result)
        return results

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _open(self):
        if self._connection is None:
            try:
                connection = get_connection(self.backend, fail_silently=False)
                connection.open()
            except (ImportError, ImproperlyConfigured) as error:
                raise TransportConfigError(f"{self.backend}: {error}") from error
            self._connection = connection
        return self._connection

    def _send_one(self, connection, envelope: Envelope, remote: str) -> Result:
        from anymail.exceptions import (
            AnymailAPIError,
            AnymailConfigurationError,
            AnymailError,
            AnymailInvalidAddress,
            AnymailRecipientsRefused,
            AnymailUnsupportedFeature,
        )

        try:
            message = email_from_envelope(envelope)
        except (ValueError, LookupError) as error:
            return _result(envelope, "failed", f"The message cannot be read: {error}", "soft")
        try:
            sent = connection.send_messages([message])
        except AnymailRecipientsRefused:
            sent = 1  # every recipient invalid or rejected: the status below says which
        except AnymailInvalidAddress as error:
            return _result(envelope, "failed", _first_line(error), "hard", remote)
        except (
            AnymailUnsupportedFeature,
            AnymailConfigurationError,
            ImproperlyConfigured,
        ) as error:
            raise TransportConfigError(_first_line(error)) from error
        except AnymailAPIError as error:
            status = error.status_code
            text = _first_line(error)
            if status in (401, 403):
                raise TransportConfigError(f"The ESP refused the credentials: {text}") from error
            if status in (400, 422):
                return _result(
                    envelope, "failed", f"The ESP refused the message: {text}", "soft", remote
                )
            return _result(envelope, "deferred", f"ESP API error: {text}", remote=remote)
        except (AnymailError, OSError) as error:
            return _result(
                envelope, "deferred", f"ESP API error: {_first_line(error)}", remote=remote
            )
        if not sent:  # a pre_send receiver cancelled it (AnymailCancelSend)
            return _result(envelope, "failed", "Cancelled before the ESP call.", "soft", remote)
        status = getattr(message, "anymail_status", None)
        recipients = getattr(status, "recipients", {}) or {}
        recipient_status = recipients.get(envelope.recipient)
        if recipient_status is None and len(recipients) == 1:
            recipient_status = next(iter(recipients.values()))
        if recipient_status is None:
            return _result(
                envelope, "unknown", "The ESP gave no status for this recipient.", remote=remote
            )
        state, bounce_class = _STATES.get(recipient_status.status, ("unknown", ""))
        text = f"{recipient_status.status} by the ESP"
        if recipient_status.message_id is not None:
            text += f", message id {recipient_status.message_id}"
        return _result(envelope, state, text, bounce_class, remote)


def _result(
    envelope: Envelope, state: str, text: str, bounce_class: str = "", remote: str = ""
) -> Result:
    return Result(
        delivery_id=envelope.delivery_id,
        state=state,
        response=text[:1000],
        remote_host=remote[:253],
        bounce_class=bounce_class,
    )


def _first_line(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # anymail's __str__ reads the HTTP response, which may be odd
        text = repr(error.args)
    return (text.strip().splitlines() or [type(error).__name__])[0][:500]
