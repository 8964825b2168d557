"""The Django email backend of the platform: system mail leaves like campaigns do.

Confirmations, invitations, password resets, test sends and export links go through
`django.core.mail` (accounts/mail.py, on the transactional Celery queue). With
EMAIL_BACKEND = "sending.backends.PlatformEmailBackend" each message is DKIM-signed for
its From domain when that is a verified sending domain, and handed to the platform's
default transport, one envelope per recipient, as the send pipeline does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from email.utils import make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils.encoding import punycode

from sending.dkim import PreparedSigner
from sending.models import SendingDomain
from sending.selectors import dkim_key_list_signing, sending_domain_signing_for
from sending.transports import transport_for
from sending.transports.base import Envelope, Result, TransportConfigError

RETRYABLE_STATES = ("deferred", "unknown")


class SystemMailDeferred(OSError):
    """Not delivered this time (4xx, connection trouble, or an unknown outcome).

    An OSError, so that `system_mail_send_task` retries it with back-off. A message whose
    outcome is unknown may have arrived: a second copy of a system message is the lesser
    harm than none.
    """


class SystemMailRefused(Exception):
    """Refused for good (5xx) or undeliverable: another try would be refused again."""


def envelope_address(value: str) -> str:
    """The bare address of a header value, domain in IDNA form, local part as written."""
    _, address = parseaddr(value)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"Invalid address {value!r}")
    return f"{local}@{punycode(domain)}"


def _unique(addresses: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    unique = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


class PlatformEmailBackend(BaseEmailBackend):
    """Sends django.core.mail messages through `transport_for(None)`, DKIM-signed."""

    def __init__(self, fail_silently: bool = False, **kwargs) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self._signers: dict[int, list[PreparedSigner]] = {}

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            try:
                sent += self._send(message)
            except (SystemMailDeferred, SystemMailRefused, TransportConfigError, ValueError):
                if not self.fail_silently:
                    raise
        return sent

    def _send(self, message: EmailMessage) -> bool:
        recipients = _unique([envelope_address(rcpt) for rcpt in message.recipients()])
        if not recipients:
            return False
        from_address = envelope_address(message.extra_headers.get("From", message.from_email))
        domain = sending_domain_signing_for(from_address)
        data = self._serialise(message, from_address=from_address)
        if domain is not None:
            for signer in self._signers_for(domain):
                data = signer.sign(data) + data
        # Bounces of workspace mail go to its own verified address; platform mail's to
        # SERVER_EMAIL, so that the platform never claims an unverified domain.
        mail_from = from_address if domain is not None else envelope_address(settings.SERVER_EMAIL)
        envelopes = [
            Envelope(delivery_id=index, mail_from=mail_from, recipient=recipient, message=data)
            for index, recipient in enumerate(recipients)
        ]
        results = transport_for(None).send_many(envelopes)
        self._raise_unless_sent(recipients, results)
        return True

    @staticmethod
    def _serialise(message: EmailMessage, *, from_address: str) -> bytes:
        names = {name.lower() for name in message.extra_headers}
        if "message-id" not in names:
            # On the From domain, and never Django's DNS_NAME (a look-up of this host).
            message = copy.copy(message)
            message.extra_headers = {
                **message.extra_headers,
                "Message-ID": make_msgid(domain=from_address.rpartition("@")[2]),
            }
        return message.message().as_bytes(linesep="\r\n")

    def _signers_for(self, domain: SendingDomain) -> list[PreparedSigner]:
        if domain.pk not in self._signers:
            self._signers[domain.pk] = [
                PreparedSigner(
                    domain=domain.domain,
                    selector=key.selector,
                    private_key=key.private_key,
                    algorithm=key.algorithm,
                )
                for key in dkim_key_list_signing(domain=domain)
            ]
        return self._signers[domain.pk]

    @staticmethod
    def _raise_unless_sent(recipients: list[str], results: list[Result]) -> None:
        if len(results) != len(recipients):
            raise SystemMailDeferred(
                f"The transport answered {len(results)} results for {len(recipients)} recipients."
            )
        by_id = dict(enumerate(recipients))
        failed = [
            (by_id.get(result.delivery_id, "?"), result)
            for result in results
            if result.state != "sent"
        ]
        if not failed:
            return
        text = "; ".join(
            f"{recipient}: {result.state} {result.smtp_code or ''} {result.response}".strip()
            for recipient, result in failed
        )
        if any(result.state in RETRYABLE_STATES for _, result in failed):
            raise SystemMailDeferred(f"Not delivered, will retry: {text}")
        raise SystemMailRefused(f"Refused: {text}")
