"""System mail (django.core.mail) leaves through the platform's transports, DKIM-signed
for verified domains, and reaches a real SMTP sink on loopback."""

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

import dkim as dkimpy
import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.management.base import OutputWrapper

from sending import outbox
from sending.backends import PlatformEmailBackend, SystemMailDeferred, SystemMailRefused
from sending.management.commands.smtp_sink import SinkHandler
from sending.models import SendingDomain
from sending.services.domains import sending_domain_add, sending_domain_check
from sending.transports import transports_close
from tests.factories import WorkspaceFactory
from tests.sending.conftest import dkim_dnsfunc, publish

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.PlatformEmailBackend"


class ScriptedSinkHandler(SinkHandler):
    """The sink of `make run`, except that gone@… is refused (5xx) and later@… deferred (4xx)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rcpt_attempts: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts.append(address)
        if address.startswith("gone@"):
            return "550 5.1.1 No such user here"
        if address.startswith("later@"):
            return "451 4.3.0 Try again later"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@dataclass
class Sink:
    directory: Path
    handler: ScriptedSinkHandler
    stored: list = field(default_factory=list)

    def messages(self) -> list[outbox.OutboxMessage]:
        """What the sink stored, oldest first."""
        return list(reversed(outbox.outbox_message_list(page=1, per_page=100).object_list))


@pytest.fixture
def sink(settings, tmp_path, free_port) -> Iterator[Sink]:
    """The platform's smtp transport pointed at the real sink on loopback."""
    settings.VAR_DIR = tmp_path
    directory = tmp_path / "outbox"
    handler = ScriptedSinkHandler(directory=directory, stdout=OutputWrapper(io.StringIO()))
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    settings.EMAIL_BACKEND = BACKEND
    settings.SENDING_TRANSPORT = "smtp"
    settings.SENDING_SMTP_HOST = controller.hostname
    settings.SENDING_SMTP_PORT = controller.port
    settings.SENDING_SMTP_SECURITY = "none"
    settings.SENDING_SMTP_USERNAME = settings.SENDING_SMTP_PASSWORD = ""
    settings.SENDING_SMTP_TIMEOUT_SECONDS = 5
    settings.SERVER_EMAIL = "ESP Platform <platform-bounces@esp.example.net>"
    try:
        yield Sink(directory=directory, handler=handler)
    finally:
        transports_close()  # the transport keeps its connections open between calls
        controller.stop()


def _verified_domain(dns_server, name: str = "news.example.com") -> SendingDomain:
    domain = sending_domain_add(workspace=WorkspaceFactory(), domain=name, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    return domain


def test_system_mail_is_dkim_signed_for_a_verified_domain(sink, dns_server):
    domain = _verified_domain(dns_server)

    sent = mail.send_mail(
        "Confirm your subscription",
        "Please confirm: https://testserver/c/abc\n",
        "Shop <hello@news.example.com>",
        ["reader@example.org"],
        html_message="<p>Please <a href='https://testserver/c/abc'>confirm</a></p>",
    )

    assert sent == 1
    (message,) = sink.messages()
    assert message.envelope_from == "hello@news.example.com"
    assert message.envelope_to == ["reader@example.org"]
    assert message.subject == "Confirm your subscription"
    assert message.message["Message-ID"].endswith("@news.example.com>")
    verifier = dkimpy.DKIM(message.raw)
    assert verifier.verify(idx=0, dnsfunc=dkim_dnsfunc)
    assert verifier.signature_fields[b"d"] == domain.domain.encode()
    assert verifier.signature_fields[b"c"] == b"relaxed/relaxed"
    # The outbox page reads the same verdict.
    assert message.dkim.state == outbox.PASS


def test_system_mail_from_an_unknown_domain_goes_unsigned_from_server_email(sink, dns_server):
    _verified_domain(dns_server)  # someone else's verified domain changes nothing here

    mail.send_mail("Welcome", "Hello\n", "ESP <no-reply@platform.example.net>", ["a@example.org"])

    (message,) = sink.messages()
    assert b"DKIM-Signature" not in message.raw
    assert message.dkim.state == outbox.NONE
    assert message.envelope_from == "platform-bounces@esp.example.net"
    assert parseaddr(message.from_header)[1] == "no-reply@platform.example.net"
    assert message.message["Message-ID"].endswith("@platform.example.net>")


def test_bcc_recipients_get_the_message_without_a_bcc_header(sink, dns_server):
    _verified_domain(dns_server)
    message = mail.EmailMessage(
        subject="Export ready",
        body="Your export is ready.\n",
        from_email="Shop <hello@news.example.com>",
        to=["to@example.org"],
        cc=["cc@example.org"],
        bcc=["hidden@example.org"],
    )

    assert message.send() == 1

    stored = sink.messages()
    received_by = sorted(rcpt for m in stored for rcpt in m.envelope_to)
    assert received_by == ["cc@example.org", "hidden@example.org", "to@example.org"]
    for copy in stored:
        assert copy.message["Bcc"] is None
        assert b"hidden@example.org" not in copy.raw
        assert copy.message["Cc"] == "cc@example.org"
        assert copy.dkim.state == outbox.PASS


def test_a_refusal_raises_unless_failing_silently(sink, dns_server):
    with pytest.raises(SystemMailRefused, match="550"):
        mail.send_mail("Reset", "Link\n", "ESP <no-reply@esp.example.net>", ["gone@example.org"])

    backend = PlatformEmailBackend(fail_silently=True)
    message = mail.EmailMessage("Reset", "Link\n", "no-reply@esp.example.net", ["gone@example.org"])
    assert backend.send_messages([message]) == 0
    assert sink.messages() == []


def test_a_deferral_raises_an_oserror_that_the_mail_task_retries(sink, dns_server):
    from accounts.tasks import system_mail_send_task

    with pytest.raises(SystemMailDeferred, match="451"):
        mail.send_mail("Reset", "Link\n", "ESP <no-reply@esp.example.net>", ["later@example.org"])
    assert isinstance(SystemMailDeferred("x"), OSError)

    sink.handler.rcpt_attempts.clear()
    with pytest.raises(SystemMailDeferred):
        system_mail_send_task.apply(
            kwargs={"subject": "Reset", "text": "Link\n", "html": "", "to": ["later@example.org"]}
        ).get()
    # Tried again (inline here, with back-off on a worker) until the task's retries ran out.
    assert len(sink.handler.rcpt_attempts) == 1 + system_mail_send_task.max_retries


def test_system_mail_task_delivers_through_the_backend(sink, dns_server):
    from accounts.mail import mail_deliver

    mail_deliver(
        subject="Invitation", text="Join us\n", html="<p>Join us</p>", to=["new@example.org"]
    )

    (message,) = sink.messages()
    assert message.subject == "Invitation"
    assert message.envelope_to == ["new@example.org"]
    assert message.html.strip() == "<p>Join us</p>"
