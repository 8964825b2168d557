"""The operators' outbox: messages the real sink stored, read back with their DKIM results."""

import html
import io
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.core.management.base import OutputWrapper
from django.test import Client
from django.urls import reverse

from sending import outbox
from sending.demo import DEMO_DOMAIN, sending_demo_seed
from sending.dkim import PreparedSigner
from sending.management.commands.smtp_sink import SinkHandler
from sending.models import SendingDomain
from sending.selectors import dkim_key_list_signing
from sending.services.domains import sending_domain_add
from tests.factories import UserFactory, WorkspaceFactory
from tests.sending.conftest import publish

pytestmark = pytest.mark.django_db

OUTBOX = "/admin/sending/outbox/"


@dataclass
class Sink:
    host: str
    port: int
    directory: Path

    def send(self, message: bytes, *, mail_from: str, to: list[str]) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
            smtp.sendmail(mail_from, to, message)


@pytest.fixture
def sink(settings, tmp_path, free_port) -> Iterator[Sink]:
    """`manage.py smtp_sink`'s handler on a free loopback port, storing under tmp_path."""
    settings.VAR_DIR = tmp_path
    directory = tmp_path / "outbox"
    handler = SinkHandler(directory=directory, stdout=OutputWrapper(io.StringIO()))
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    try:
        yield Sink(host=controller.hostname, port=controller.port, directory=directory)
    finally:
        controller.stop()


def _message(
    *, sender: str, subject: str, html_part: str = "", to: str = "reader@example.org"
) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = f"Shop <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Tue, 01 Oct 2024 10:00:00 +0000"
    message["Message-ID"] = f"<{abs(hash(subject))}@{sender.partition('@')[2]}>"
    message.set_content("Hello,\nour autumn sale starts today.\n")
    if html_part:
        message.add_alternative(html_part, subtype="html")
    return message.as_bytes()


def _signed(message: bytes, domain: SendingDomain) -> bytes:
    for key in dkim_key_list_signing(domain=domain):
        signer = PreparedSigner(
            domain=domain.domain,
            selector=key.selector,
            private_key=key.private_key,
            algorithm=key.algorithm,
        )
        message = signer.sign(message) + message
    return message


def _policy(response) -> dict[str, str]:
    """The Content-Security-Policy header as directive -> sources."""
    directives = (d.strip() for d in response["Content-Security-Policy"].split(";"))
    return dict(d.split(" ", 1) if " " in d else (d, "") for d in directives if d)


def _only_message_id(sink: Sink) -> str:
    (path,) = sink.directory.glob("*.eml")
    return path.stem


def test_outbox_lists_what_the_sink_stored_newest_first(operator_client, sink, dns_server):
    sink.send(
        _message(sender="hello@shop.example.com", subject="First"),
        mail_from="bounces@shop.example.com",
        to=["one@example.org"],
    )
    sink.send(
        _message(sender="hello@shop.example.com", subject="Second: Grüße"),
        mail_from="bounces@shop.example.com",
        to=["two@example.org", "hidden@example.org"],
    )

    page = operator_client.get(OUTBOX)

    assert page.status_code == 200
    text = page.content.decode()
    assert text.index("Second: Grüße") < text.index("First")
    assert "two@example.org, hidden@example.org" in text  # the envelope: Bcc shows here
    assert html.escape("Shop <hello@shop.example.com>") in text
    assert "Unsigned" in text
    ids = sorted(path.stem for path in sink.directory.glob("*.eml"))
    assert f"{OUTBOX}{ids[1]}/" in text


def test_outbox_pages_read_only_the_page_shown(sink, dns_server):
    for number in range(3):
        sink.send(
            _message(sender="hello@shop.example.com", subject=f"Message {number}"),
            mail_from="bounces@shop.example.com",
            to=["reader@example.org"],
        )

    first = outbox.outbox_message_list(page=1, per_page=2)
    second = outbox.outbox_message_list(page=2, per_page=2)

    assert [m.subject for m in first] == ["Message 2", "Message 1"]
    assert [m.subject for m in second] == ["Message 0"]
    assert first.paginator.count == 3
    assert first.object_list[0].envelope_from == "bounces@shop.example.com"
    assert first.object_list[0].envelope_to == ["reader@example.org"]


def test_detail_shows_headers_parts_and_a_passing_dkim_result(operator_client, sink, dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    publish(dns_server, domain)
    message = _message(
        sender="hello@news.example.com",
        subject="Autumn sale",
        html_part="<p style='color: green'>Autumn <b>sale</b></p>",
    )
    sink.send(_signed(message, domain), mail_from="b@news.example.com", to=["a@example.org"])

    page = operator_client.get(f"{OUTBOX}{_only_message_id(sink)}/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "DKIM pass" in text
    assert "signature verified with the key published in DNS" in text
    assert "esp1" in text
    assert "rsa-sha256" in text
    assert "DKIM-Signature" in text
    assert "Message-ID" in text
    assert "our autumn sale starts today." in text  # the text part
    assert "text/html" in text
    assert "text/plain" in text
    assert html.escape("<p style='color: green'>Autumn <b>sale</b></p>") in text  # srcdoc
    assert "X-Sink-Envelope" not in text  # the sink's envelope lines are not the message's
    assert "MAIL FROM" in text
    assert "b@news.example.com" in text
    # The preview's inline styles are allowed; scripts are not, in any form.
    assert _policy(page)["style-src"] == "'self' 'unsafe-inline'"
    assert _policy(page)["script-src"] == "'self'"


def test_tampered_message_fails_dkim(operator_client, sink, dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    publish(dns_server, domain)
    signed = _signed(_message(sender="hello@news.example.com", subject="Sale"), domain)
    tampered = signed.replace(b"autumn sale starts", b"winter sale starts")
    sink.send(tampered, mail_from="b@news.example.com", to=["a@example.org"])

    detail = operator_client.get(f"{OUTBOX}{_only_message_id(sink)}/").content.decode()
    listing = operator_client.get(OUTBOX).content.decode()

    assert "DKIM fail" in detail
    assert "the body was changed after signing" in detail
    assert "DKIM fail" in listing


def test_signature_with_another_published_key_fails(sink, dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    other = sending_domain_add(
        workspace=WorkspaceFactory(), domain="other.example.com", acting_user=None
    )
    publish(dns_server, domain, dkim=[other.dkim_keys.get().record_value])
    sink.send(
        _signed(_message(sender="hello@news.example.com", subject="Sale"), domain),
        mail_from="b@news.example.com",
        to=["a@example.org"],
    )

    (message,) = outbox.outbox_message_list(page=1)

    assert message.dkim.state == outbox.FAIL
    assert "does not match" in message.dkim.signatures[0].detail


def test_demo_domain_key_is_reported_unpublished_not_failed(operator_client, sink, dns_server):
    domain = sending_demo_seed(workspace=WorkspaceFactory())
    assert domain.domain == DEMO_DOMAIN
    message = _message(sender=f"hello@{DEMO_DOMAIN}", subject="Demo campaign")
    sink.send(_signed(message, domain), mail_from=f"b@{DEMO_DOMAIN}", to=["a@example.org"])

    (stored,) = outbox.outbox_message_list(page=1)
    page = operator_client.get(f"{OUTBOX}{stored.id}/").content.decode()

    assert stored.dkim.state == outbox.UNPUBLISHED
    assert "not published in DNS (demo)" in page
    assert "Key not in DNS" in page
    assert dns_server.queries_for(f"esp1._domainkey.{DEMO_DOMAIN}", "TXT") >= 1


def test_key_lookup_failure_is_a_dns_error_not_a_failure(sink, dns_server):
    from sending.dnsserver import SERVFAIL

    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    dns_server.zone[f"esp1._domainkey.{domain.domain}"] = SERVFAIL
    sink.send(
        _signed(_message(sender="hello@news.example.com", subject="Sale"), domain),
        mail_from="b@news.example.com",
        to=["a@example.org"],
    )

    (message,) = outbox.outbox_message_list(page=1)

    assert message.dkim.state == outbox.TEMPERROR
    assert message.dkim.label == "DNS error"


def test_html_part_is_shown_in_an_empty_sandbox_and_never_runs_scripts(
    operator_client, sink, dns_server
):
    evil = "<p>Hi</p><script>parent.document.title='owned'</script><img src=x onerror=alert(1)>"
    sink.send(
        _message(
            sender="hello@shop.example.com", subject="<script>alert(2)</script>", html_part=evil
        ),
        mail_from="b@shop.example.com",
        to=["a@example.org"],
    )

    page = operator_client.get(f"{OUTBOX}{_only_message_id(sink)}/")
    text = page.content.decode()

    assert '<iframe sandbox="" ' in text
    assert "allow-scripts" not in text
    assert "allow-same-origin" not in text
    assert "<script>parent" not in text
    assert "<script>alert" not in text
    assert "onerror=alert(1)>" not in text
    assert html.escape(evil) in text  # only ever as the iframe's escaped srcdoc / source
    assert _policy(page)["script-src"] == "'self'"


def test_empty_outbox_explains_the_sink(operator_client, settings, tmp_path):
    settings.VAR_DIR = tmp_path

    page = operator_client.get(OUTBOX).content.decode()

    assert "No mail yet" in page
    assert "make run" in page
    assert f"127.0.0.1:{settings.SMTP_SINK_PORT}" in page
    assert str(tmp_path / "outbox") in page


def test_unknown_and_malformed_message_ids_are_not_found(operator_client, sink):
    assert operator_client.get(f"{OUTBOX}20240101T000000.000000Z-0123456789ab/").status_code == 404
    assert operator_client.get(f"{OUTBOX}..%2F..%2Fsettings/").status_code == 404
    assert operator_client.get(f"{OUTBOX}nope/").status_code == 404


def test_admin_index_links_the_outbox_under_sending(operator_client, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    page = operator_client.get("/admin/").content.decode()
    assert f'href="{OUTBOX}"' in page


def test_outbox_is_for_verified_staff_only(member_client, client, sink):
    sink.send(
        _message(sender="hello@shop.example.com", subject="Private"),
        mail_from="b@shop.example.com",
        to=["a@example.org"],
    )
    detail = f"{OUTBOX}{_only_message_id(sink)}/"

    marketer = member_client(WorkspaceFactory())
    for path in (OUTBOX, detail):
        response = marketer.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert b"Private" not in response.content

    assert client.get(OUTBOX)["Location"].startswith("/admin/login/")

    # Staff who have not completed two-factor sign-in are sent to it first.
    unverified = Client()
    unverified.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = unverified.get(detail)
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:two_factor")
