"""Feedback end to end, on the processes production runs: a campaign goes out to a loopback
sink; a bounce, an ARF complaint and a `mailto:` unsubscribe then come back over SMTP to
`manage.py mailin` (its own process, on the test database); a real Celery worker process
handles what the listener stored; within seconds the delivery, the contact and the
suppression list show it, and the next campaign to the list leaves the address out."""

import re
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.utils import format_datetime

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact, Subscription, Suppression
from sending import verp
from sending.models import CampaignSend, Delivery, FeedbackEvent, InboundMessage
from sending.pipeline import campaigns_start_due, chunk_send
from sending.services.domains import sending_domain_add, sending_domain_check
from tests.conftest import redis_test_url
from tests.factories import ContactListFactory, WorkspaceFactory
from tests.sending.conftest import publish
from tests.sending.feedback.test_listener import MailinProcess, _database_url
from tests.sending.test_pipeline import RawSink, sink  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.serial]

DOMAIN = "news.shop.example"
FBL = "fbl@inbound.esp.example"
WITHIN_SECONDS = 30
State = Delivery.State


@dataclass
class Stack:
    campaign: Campaign
    sink: RawSink
    mailin: MailinProcess

    def sent(self, address: str) -> tuple[Delivery, str, bytes]:
        """The delivery to address, its envelope sender and the bytes the receiver got."""
        [(mail_from, raw)] = self.sink.envelopes_to(address)
        return Delivery.objects.get(campaign=self.campaign, address=address), mail_from, raw

    def deliver(self, *, sender: str, rcpt: str, raw: bytes) -> None:
        import smtplib

        with smtplib.SMTP(self.mailin.hostname, self.mailin.port, timeout=10) as client:
            client.ehlo("mx.mail3.test")
            client.sendmail(sender, [rcpt], raw)

    def next_campaign(self) -> CampaignSend:
        """A second campaign to the same list, snapshotted and sent."""
        campaign = Campaign.objects.create(
            workspace=self.campaign.workspace,
            name="Summer",
            subject="Summer",
            from_name="Shop",
            from_email=f"hello@{DOMAIN}",
            html='<p>Summer</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
            "<p>{{ postal_address }}</p>",
            status=Campaign.Status.SCHEDULED,
            scheduled_at=timezone.now(),
        )
        campaign.include_lists.set(self.campaign.include_lists.all())
        assert campaigns_start_due() == [campaign.pk]
        while chunk_send(campaign_id=campaign.pk) is not None:
            pass
        return CampaignSend.objects.get(campaign=campaign)


@pytest.fixture
def stack(dns_server, settings, sink, free_port, celery_worker_process):  # noqa: F811
    settings.BASE_URL = "https://esp.example"
    workspace = WorkspaceFactory(postal_address="1 Harbour Street, Bristol")
    domain = sending_domain_add(workspace=workspace, domain=DOMAIN, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    contact_list = ContactListFactory(workspace=workspace)
    contacts = Contact.objects.bulk_create(
        Contact(workspace=workspace, email=f"reader{i}@mail{i}.test", first_name=f"R{i}")
        for i in range(5)
    )
    Subscription.objects.bulk_create(
        Subscription(workspace=workspace, contact=contact, contact_list=contact_list)
        for contact in contacts
    )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring",
        subject="Hi {{ first_name }}",
        from_name="Shop",
        from_email=f"hello@{DOMAIN}",
        html='<p>Hello {{ first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
        " {{ postal_address }}</p>",
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    campaign.include_lists.add(contact_list)
    assert campaigns_start_due() == [campaign.pk]
    while chunk_send(campaign_id=campaign.pk) is not None:
        pass
    assert len(sink.received) == 5

    celery_worker_process(queues="default")
    mailin = MailinProcess(
        free_port(),
        {
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": redis_test_url(),
            "CELERY_RESULT_BACKEND": redis_test_url(),
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "MAILIN_FBL_ADDRESSES": FBL,
        },
    )
    try:
        yield Stack(campaign=campaign, sink=sink, mailin=mailin)
    finally:
        mailin.stop()


def _wait_for(condition, what: str, stack: Stack):
    """Poll until condition() is true; give up at once when the stored message is done
    with (processed, failed, …) and the condition still does not hold."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while time.monotonic() < deadline:
        done = InboundMessage.objects.exclude(status=InboundMessage.Status.RECEIVED).exists()
        value = condition()
        if value:
            return value
        if done:
            break
        time.sleep(0.1)
    rows = list(InboundMessage.objects.values("pk", "status", "kind", "error"))
    pytest.fail(f"{what}: not so within {WITHIN_SECONDS} s; inbound {rows}; {stack.mailin.lines}")


def _headers_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def _postfix_dsn(*, original: bytes, recipient: str, verp_address: str) -> bytes:
    """A bounce as Postfix writes it: a multipart/report with the human part, the
    delivery-status part and the original headers."""
    now = format_datetime(timezone.now())
    return (
        (
            f"Return-Path: <>\r\n"
            f"Received: by mx.mail3.test (Postfix) id 4XkQ3d1Zb2z9t; {now}\r\n"
            f"Date: {now}\r\n"
            "From: MAILER-DAEMON@mx.mail3.test (Mail Delivery System)\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            f"To: {verp_address}\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            '\tboundary="4XkQ3d1Zb2z9t.1732870000/mx.mail3.test"\r\n'
            "Message-Id: <20261129101500.4XkQ3d1Zb2z9t@mx.mail3.test>\r\n"
            "\r\n"
            "This is a MIME-encapsulated message.\r\n"
            "\r\n"
            "--4XkQ3d1Zb2z9t.1732870000/mx.mail3.test\r\n"
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            "This is the mail system at host mx.mail3.test.\r\n"
            "\r\n"
            "I'm sorry to have to inform you that your message could not\r\n"
            "be delivered to one or more recipients. It's attached below.\r\n"
            "\r\n"
            f"<{recipient}>: host mx.mail3.test[192.0.2.33] said: 550 5.1.1\r\n"
            f"    <{recipient}>: Recipient address rejected: User unknown in local\r\n"
            "    recipient table (in reply to RCPT TO command)\r\n"
            "\r\n"
            "--4XkQ3d1Zb2z9t.1732870000/mx.mail3.test\r\n"
            "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n"
            "\r\n"
            "Reporting-MTA: dns; mx.mail3.test\r\n"
            "X-Postfix-Queue-ID: 4XkQ3d1Zb2z9t\r\n"
            f"X-Postfix-Sender: rfc822; {verp_address}\r\n"
            f"Arrival-Date: {now}\r\n"
            "\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\n"
            f"Original-Recipient: rfc822;{recipient}\r\n"
            "Action: failed\r\n"
            "Status: 5.1.1\r\n"
            "Remote-MTA: dns; mx.mail3.test\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:\r\n"
            "    User unknown in local recipient table\r\n"
            "\r\n"
            "--4XkQ3d1Zb2z9t.1732870000/mx.mail3.test\r\n"
            "Content-Description: Undelivered Message Headers\r\n"
            "Content-Type: text/rfc822-headers\r\n"
            "\r\n"
        ).encode()
        + _headers_of(original)
        + (b"\r\n--4XkQ3d1Zb2z9t.1732870000/mx.mail3.test--\r\n")
    )


def _arf_complaint(*, original: bytes, recipient: str, verp_address: str) -> bytes:
    """An RFC 5965 feedback report as a mailbox provider's feedback loop sends it, with the
    original message (the Return-Path its MX added in front)."""
    now = format_datetime(timezone.now())
    return (
        (
            f"Date: {now}\r\n"
            "From: Feedback Loop <feedback@fbl.mail4.test>\r\n"
            f"To: {FBL}\r\n"
            "Subject: FW: complaint about message from 192.0.2.10\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=feedback-report; boundary="arf_b"\r\n'
            "\r\n"
            "--arf_b\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
            "This is an email abuse report for an email message received from IP\r\n"
            f"192.0.2.10 on {now}.\r\n"
            "\r\n"
            "--arf_b\r\n"
            "Content-Type: message/feedback-report\r\n"
            "\r\n"
            "Feedback-Type: abuse\r\n"
            "User-Agent: MailboxProvider-FBL/1.0\r\n"
            "Version: 1\r\n"
            f"Original-Mail-From: <{verp_address}>\r\n"
            f"Original-Rcpt-To: <{recipient}>\r\n"
            f"Arrival-Date: {now}\r\n"
            "Source-IP: 192.0.2.10\r\n"
            f"Reported-Domain: {DOMAIN}\r\n"
            "\r\n"
            "--arf_b\r\n"
            "Content-Type: message/rfc822\r\n"
            "Content-Disposition: inline\r\n"
            "\r\n"
            f"Return-Path: <{verp_address}>\r\n"
        ).encode()
        + original
        + b"\r\n--arf_b--\r\n"
    )


def test_a_dsn_at_the_verp_address_bounces_the_delivery_and_the_next_campaign_skips_it(stack):
    address = "reader3@mail3.test"
    delivery, return_path, original = stack.sent(address)
    assert verp.verp_read(return_path, local=verp.BOUNCES) == delivery.pk

    stack.deliver(
        sender="",
        rcpt=return_path,
        raw=_postfix_dsn(original=original, recipient=address, verp_address=return_path),
    )

    bounced = _wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, state=State.BOUNCED).first(),
        "the delivery bounced",
        stack,
    )
    assert bounced.bounce_class == "hard"
    assert bounced.bounced_at is not None
    event = FeedbackEvent.objects.get(delivery=delivery)
    assert (event.kind, event.bounce_class, event.status) == ("bounce", "hard", "5.1.1")
    assert event.remote_mta == "mx.mail3.test"
    assert Suppression.objects.filter(
        workspace=stack.campaign.workspace, email__iexact=address, reason="hard_bounce"
    ).exists()
    assert Contact.objects.get(email=address).status == Contact.Status.BOUNCED
    inbound = InboundMessage.objects.get()
    assert (inbound.status, inbound.kind) == ("processed", "bounce")
    assert inbound.delivery_id == delivery.pk
    # The other recipients are untouched.
    assert set(
        Delivery.objects.filter(campaign=stack.campaign).values_list("state", flat=True)
    ) == {State.SENT, State.BOUNCED}

    send = stack.next_campaign()

    assert (send.audience_total, send.deliveries_total) == (5, 4)
    assert send.excluded_suppressed + send.excluded_inactive == 1
    assert not Delivery.objects.filter(campaign=send.campaign, address=address).exists()
    assert len(stack.sink.to(address)) == 1  # the first campaign's message only
    assert len(stack.sink.to("reader2@mail2.test")) == 2


def test_an_arf_complaint_to_the_fbl_address_unsubscribes_and_suppresses_at_once(stack):
    address = "reader4@mail4.test"
    delivery, return_path, original = stack.sent(address)

    stack.deliver(
        sender="feedback@fbl.mail4.test",
        rcpt=FBL,
        raw=_arf_complaint(original=original, recipient=address, verp_address=return_path),
    )

    complained = _wait_for(
        lambda: Delivery.objects.filter(pk=delivery.pk, complained_at__isnull=False).first(),
        "the complaint recorded",
        stack,
    )
    assert complained.state == State.SENT  # delivered, then complained about
    event = FeedbackEvent.objects.get(delivery=delivery)
    assert (event.kind, event.feedback_type) == ("complaint", "abuse")
    assert Suppression.objects.filter(
        workspace=stack.campaign.workspace, email__iexact=address, reason="complaint"
    ).exists()
    contact = Contact.objects.get(email=address)
    assert set(contact.subscriptions.values_list("status", flat=True)) == {
        Subscription.Status.UNSUBSCRIBED
    }
    assert InboundMessage.objects.get().kind == "complaint"

    send = stack.next_campaign()

    assert send.deliveries_total == 4
    assert not Delivery.objects.filter(campaign=send.campaign, address=address).exists()
    assert len(stack.sink.to(address)) == 1


def test_a_mail_to_the_list_unsubscribe_mailto_address_unsubscribes(stack):
    address = "reader1@mail1.test"
    delivery, _, original = stack.sent(address)
    header = message_from_bytes(original, policy=policy.default)["List-Unsubscribe"]
    [mailto] = re.findall(r"<mailto:([^>?]+)", str(header))
    assert verp.verp_read(mailto, local=verp.UNSUBSCRIBE) == delivery.pk

    # What a mail client sends for "Unsubscribe" (RFC 2369): a short message from the reader.
    stack.deliver(
        sender=address,
        rcpt=mailto,
        raw=(
            f"From: R1 <{address}>\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n"
            f"Date: {format_datetime(timezone.now())}\r\n\r\nunsubscribe\r\n"
        ).encode(),
    )

    _wait_for(
        lambda: FeedbackEvent.objects.filter(delivery=delivery, kind="unsubscribe").exists(),
        "the unsubscribe recorded",
        stack,
    )
    contact = Contact.objects.get(email=address)
    assert set(contact.subscriptions.values_list("status", flat=True)) == {
        Subscription.Status.UNSUBSCRIBED
    }
    assert InboundMessage.objects.get().status == "processed"

    send = stack.next_campaign()

    assert send.deliveries_total == 4
    assert not Delivery.objects.filter(campaign=send.campaign, address=address).exists()
