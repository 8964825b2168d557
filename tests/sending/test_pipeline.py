"""The send pipeline end to end: a scheduled campaign goes out through the smtp transport to
a real SMTP server on loopback, each recipient exactly once, every message DKIM-signed."""

import re
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import dkim as dkimpy
import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact, Subscription, Suppression
from sending import links
from sending.models import Delivery, SendingDomain
from sending.pipeline import (
    campaign_finish_if_done,
    campaign_pause,
    campaign_progress,
    campaign_resume,
    campaign_stop,
    campaigns_start_due,
    chunk_send,
)
from sending.services.domains import sending_domain_add, sending_domain_check
from sending.transports import transports_close
from tests.factories import ContactListFactory, WorkspaceFactory
from tests.sending.conftest import dkim_dnsfunc, publish
from tests.sending.sinks import FaultySink

pytestmark = pytest.mark.django_db

State = Delivery.State
DOMAIN = "news.shop.example"


@dataclass
class RawSink:
    """An SMTP server on loopback that keeps every message as bytes, with per-recipient
    answers for chosen addresses."""

    answers: dict[str, list[str]] = field(default_factory=dict)  # address -> replies in turn
    received: list[tuple[str, str, bytes]] = field(default_factory=list)  # from, rcpt, bytes
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.answers.get(address)
        if replies:
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((envelope.mail_from, rcpt, envelope.original_content))
        return "250 2.0.0 Queued"

    def envelopes_to(self, address: str) -> list[tuple[str, bytes]]:
        """(envelope sender, bytes) of each message to address, in arrival order."""
        return [(mail_from, raw) for mail_from, rcpt, raw in self.received if rcpt == address]

    def to(self, address: str) -> list[bytes]:
        return [raw for _, raw in self.envelopes_to(address)]


@pytest.fixture
def sink(settings, free_port):
    handler = RawSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.SENDING_TRANSPORT = "smtp"
    settings.SENDING_SMTP_HOST, settings.SENDING_SMTP_PORT = "127.0.0.1", port
    settings.SENDING_SMTP_SECURITY = "none"
    settings.SENDING_SMTP_USERNAME = ""
    transports_close()
    try:
        yield handler
    finally:
        transports_close()
        controller.stop()


@pytest.fixture
def campaign_factory(dns_server, settings):
    settings.BASE_URL = "https://esp.example"

    def make(count: int, **fields) -> Campaign:
        workspace = WorkspaceFactory(postal_address="1 Harbour Street, Bristol")
        domain = sending_domain_add(workspace=workspace, domain=DOMAIN, acting_user=None)
        publish(dns_server, domain)
        sending_domain_check(domain=domain)
        # An established domain: the new-domain warm-up has its own tests (shaping/).
        SendingDomain.objects.filter(pk=domain.pk).update(is_warmed_up=True)
        contact_list = ContactListFactory(workspace=workspace)
        contacts = Contact.objects.bulk_create(
            Contact(workspace=workspace, email=f"reader{i}@mail{i % 7}.test", first_name=f"R{i}")
            for i in range(count)
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
            html=(
                '<p>Hello {{ first_name }}</p><p><a href="https://shop.example/sale">Sale</a>'
                ' <a href="https://shop.example/u?n={{ first_name }}">Yours</a></p>'
                '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
            ),
            status=Campaign.Status.SCHEDULED,
            scheduled_at=timezone.now(),
            **fields,
        )
        campaign.include_lists.add(contact_list)
        return campaign

    return make


def _drain(campaign: Campaign, limit: int = 200) -> None:
    while chunk_send(campaign_id=campaign.pk, limit=limit) is not None:
        pass


def test_a_campaign_reaches_each_recipient_once_signed_tracked_and_unsubscribable(
    campaign_factory, sink, client
):
    campaign = campaign_factory(2000)
    assert campaigns_start_due() == [campaign.pk]

    _drain(campaign)
    assert campaign_finish_if_done(campaign_id=campaign.pk)

    rcpts = [rcpt for _, rcpt, _ in sink.received]
    assert len(rcpts) == len(set(rcpts)) == 2000
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT
    assert Delivery.objects.filter(campaign=campaign, state=State.SENT).count() == 2000

    mail_from, rcpt, raw = sink.received[17]
    assert b"\r\n" in raw
    assert dkimpy.verify(raw, dnsfunc=dkim_dnsfunc)
    message = message_from_bytes(raw, policy=policy.default)
    delivery = Delivery.objects.get(campaign=campaign, address=rcpt)
    for header in ("Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID"):
        assert message[header], header
    assert message["Message-ID"].endswith(f"@{DOMAIN}>")
    assert mail_from.endswith(f"@{campaign.workspace.sendingdomain_set.get().return_path_host}")
    html = message.get_body(("html",)).get_content()
    targets = {}
    for href in re.findall(r'href="([^"]+)"', html):
        if "/c/" in href:
            read = links.click_read(href.rsplit("/c/", 1)[1])
            assert read is not None
            assert read[0] == delivery.pk
            targets[read[1]] = href
    first_name = delivery.contact.first_name
    assert set(targets) == {"https://shop.example/sale", f"https://shop.example/u?n={first_name}"}

    one_click = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"]).group(1)
    response = client.post(urlsplit(one_click).path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert Subscription.objects.get(contact=delivery.contact).status == "unsubscribed"


def test_every_message_verifies_with_dkimpy(campaign_factory, sink):
    campaign = campaign_factory(120)
    campaigns_start_due()
    _drain(campaign, limit=50)
    assert len(sink.received) == 120
    assert all(dkimpy.verify(raw, dnsfunc=dkim_dnsfunc) for _, _, raw in sink.received)


def test_recipients_unsubscribed_mid_send_receive_nothing_after(campaign_factory, sink, client):
    campaign = campaign_factory(300)
    campaigns_start_due()
    chunk_send(campaign_id=campaign.pk, limit=100)
    waiting = list(
        Delivery.objects.filter(campaign=campaign, state=State.QUEUED).order_by("-pk")[:10]
    )
    from compliance.tokens import unsubscribe_url

    for delivery in waiting:
        url = unsubscribe_url(
            workspace_id=campaign.workspace_id, contact_id=delivery.contact_id, campaign_id=None
        )
        assert client.post(urlsplit(url).path, {"List-Unsubscribe": "One-Click"}).status_code == 200

    _drain(campaign)

    received = {rcpt for _, rcpt, _ in sink.received}
    assert not received & {delivery.address for delivery in waiting}
    assert len(received) == 290
    assert Delivery.objects.filter(campaign=campaign, state=State.SKIPPED).count() == 10


def test_temporary_refusals_are_retried_and_permanent_ones_bounce_and_suppress(
    campaign_factory, sink, settings
):
    campaign = campaign_factory(20)
    later = ["reader1@mail1.test", "reader2@mail2.test"]
    never = ["reader3@mail3.test"]
    for address in later:
        sink.answers[address] = ["451 4.7.1 Try again later", "250 OK"]
    for address in never:
        sink.answers[address] = ["550 5.1.1 <reader3@mail3.test>: Recipient address rejected"]
    campaigns_start_due()
    _drain(campaign)

    assert set(later) <= set(
        Delivery.objects.filter(campaign=campaign, state=State.DEFERRED).values_list(
            "address", flat=True
        )
    )
    bounced = Delivery.objects.get(campaign=campaign, address=never[0])
    assert (bounced.state, bounced.bounce_class) == (State.BOUNCED, "hard")
    assert Suppression.objects.filter(workspace=campaign.workspace, reason="hard_bounce").exists()
    assert Contact.objects.get(email=never[0]).status == Contact.Status.BOUNCED
    assert not campaign_finish_if_done(campaign_id=campaign.pk)

    Delivery.objects.filter(campaign=campaign, state=State.DEFERRED).update(
        next_attempt_at=timezone.now()
    )
    _drain(campaign)

    for address in later:
        assert len(sink.to(address)) == 1
    assert sink.to(never[0]) == []
    assert campaign_finish_if_done(campaign_id=campaign.pk)


def test_pause_stops_claims_resume_continues_and_nothing_is_sent_twice(campaign_factory, sink):
    campaign = campaign_factory(250)
    campaigns_start_due()
    for _ in range(5):
        chunk_send(campaign_id=campaign.pk, limit=20)
        campaign.refresh_from_db()
        campaign_pause(campaign=campaign, acting_user=None)
        assert chunk_send(campaign_id=campaign.pk, limit=20) is None
        campaign.refresh_from_db()
        campaign_resume(campaign=campaign, acting_user=None)
    _drain(campaign)
    rcpts = [rcpt for _, rcpt, _ in sink.received]
    assert len(rcpts) == len(set(rcpts)) == 250
    progress = campaign_progress(campaign=campaign)
    assert progress.by_state == {"sent": 250}
    assert progress.percent == 100


def test_stop_skips_what_was_not_handed_over(campaign_factory, sink):
    campaign = campaign_factory(100)
    campaigns_start_due()
    chunk_send(campaign_id=campaign.pk, limit=30)
    campaign.refresh_from_db()
    assert campaign_stop(campaign=campaign, acting_user=None) == 70
    assert chunk_send(campaign_id=campaign.pk, limit=30) is None
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    assert len(sink.received) == 30


def test_a_relay_refusing_our_credentials_pauses_the_campaign_and_loses_nothing(
    campaign_factory, settings
):
    """A real relay that wants AUTH: with wrong credentials nothing is handed over, the rows
    wait in the queue, the campaign pauses; with the right ones it completes."""
    campaign = campaign_factory(30)
    campaigns_start_due()
    relay = FaultySink(auth=("esp", "right-password")).start()
    settings.SENDING_SMTP_HOST, settings.SENDING_SMTP_PORT = relay.host, relay.port
    settings.SENDING_SMTP_USERNAME, settings.SENDING_SMTP_PASSWORD = "esp", "wrong-password"
    transports_close()
    try:
        chunk_send(campaign_id=campaign.pk, limit=10)
        campaign.refresh_from_db()
        assert campaign.status == Campaign.Status.PAUSED
        assert Delivery.objects.filter(campaign=campaign, state=State.QUEUED).count() == 30
        assert set(
            Delivery.objects.filter(campaign=campaign).values_list("attempt_count", flat=True)
        ) == {0}
        assert relay.received == []

        settings.SENDING_SMTP_PASSWORD = "right-password"
        transports_close()
        campaign_resume(campaign=campaign, acting_user=None)
        _drain(campaign)
        assert len(relay.received) == 30
    finally:
        transports_close()
        relay.stop()


def test_editing_the_layout_during_a_send_does_not_change_what_recipients_get(
    campaign_factory, sink
):
    from campaigns.models import Template
    from sending import pipeline as pipeline_module

    campaign = campaign_factory(60)
    layout = Template.objects.create(
        workspace=campaign.workspace,
        name="Brand",
        html="<html><body><div>LAYOUT-ONE</div>{{ content }}</body></html>",
    )
    Campaign.objects.filter(pk=campaign.pk).update(template=layout)
    campaigns_start_due()
    chunk_send(campaign_id=campaign.pk, limit=20)

    layout.html = "<html><body><div>LAYOUT-TWO</div>{{ content }}</body></html>"
    layout.save()
    pipeline_module._builders.clear()  # as a worker that starts afresh would
    _drain(campaign)

    assert len(sink.received) == 60
    assert all(b"LAYOUT-ONE" in raw and b"LAYOUT-TWO" not in raw for _, _, raw in sink.received)


def test_an_address_that_became_invalid_fails_with_the_reason_and_the_rest_go(
    campaign_factory, sink
):
    campaign = campaign_factory(10)
    campaigns_start_due()
    broken = Delivery.objects.filter(campaign=campaign).order_by("pk").first()
    Delivery.objects.filter(pk=broken.pk).update(address="reader0@@mail0.test")
    _drain(campaign)
    broken.refresh_from_db()
    assert broken.state in (State.FAILED, State.BOUNCED)
    assert broken.last_response
    assert len(sink.received) == 9
    assert campaign_finish_if_done(campaign_id=campaign.pk)


def test_a_dkim_key_that_fails_to_load_pauses_the_campaign_with_the_reason(campaign_factory, sink):
    from accounts.models import AuditEntry
    from sending.models import DkimKey
    from sending.pipeline import _builders

    campaign = campaign_factory(10)
    campaigns_start_due()
    _builders.clear()
    key = DkimKey.objects.get(domain__domain=DOMAIN, status=DkimKey.Status.ACTIVE)
    key.private_key = "-----BEGIN RSA PRIVATE KEY-----\nbroken\n-----END RSA PRIVATE KEY-----\n"
    key.save()

    chunk_send(campaign_id=campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert Delivery.objects.filter(campaign=campaign, state=State.QUEUED).count() == 10
    reason = AuditEntry.objects.get(verb="campaign.paused").details["reason"]
    assert "DKIM" in reason or "key" in reason.lower()
    assert sink.received == []


def test_a_connection_dropped_after_the_final_dot_is_unknown_and_not_sent_again(
    campaign_factory, settings
):
    campaign = campaign_factory(12)
    campaigns_start_due()
    relay = FaultySink(rules={"reader5@*": "drop-after-dot"}).start()
    settings.SENDING_SMTP_HOST, settings.SENDING_SMTP_PORT = relay.host, relay.port
    transports_close()
    try:
        _drain(campaign, limit=4)
        unknown = Delivery.objects.get(campaign=campaign, state=State.UNKNOWN)
        assert unknown.address == "reader5@mail5.test"
        assert Delivery.objects.filter(campaign=campaign, state=State.SENT).count() == 11
        assert campaign_finish_if_done(campaign_id=campaign.pk)  # unknown is an end state
        assert [r.rcpt_tos for r in relay.received if r.dropped] == [["reader5@mail5.test"]]
        assert relay.dot_seen["reader5@mail5.test"] == 1  # arrived once, never sent again
    finally:
        transports_close()
        relay.stop()


def test_a_campaign_that_has_sent_cannot_be_deleted_on_its_own(campaign_factory, sink):
    from django.db.models import ProtectedError

    campaign = campaign_factory(5)
    campaigns_start_due()
    _drain(campaign)
    with pytest.raises(ProtectedError):
        campaign.delete()
    assert Delivery.objects.filter(campaign_id=campaign.pk).count() == 5


def test_claim_limits_decide_how_many_may_go_now(campaign_factory, sink):
    from sending import pipeline as pipeline_module

    campaign = campaign_factory(30)
    campaigns_start_due()
    allowance = {"left": 12}

    def warm_up(campaign_id: int, wanted: int) -> int:
        return min(wanted, allowance["left"])

    pipeline_module.claim_limits.append(warm_up)
    try:
        first = chunk_send(campaign_id=campaign.pk, limit=20)
        assert first.claimed == 12
        allowance["left"] = 0
        assert chunk_send(campaign_id=campaign.pk, limit=20).throttled
        assert len(sink.received) == 12
    finally:
        pipeline_module.claim_limits.remove(warm_up)
    _drain(campaign)
    assert len(sink.received) == 30


def test_each_delivery_keeps_the_message_id_it_was_sent_with_and_a_retry_reuses_it(
    campaign_factory, sink
):
    campaign = campaign_factory(6)
    retried = "reader1@mail1.test"
    sink.answers[retried] = ["451 4.7.1 Try again later", "250 OK"]
    campaigns_start_due()
    _drain(campaign)

    deferred = Delivery.objects.get(campaign=campaign, address=retried)
    assert deferred.state == State.DEFERRED
    assert deferred.message_id.startswith("<")
    first_id = deferred.message_id
    Delivery.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())
    _drain(campaign)

    for delivery in Delivery.objects.filter(campaign=campaign):
        (raw,) = sink.to(delivery.address)
        header = message_from_bytes(raw, policy=policy.default)["Message-ID"]
        assert delivery.message_id == header
    assert Delivery.objects.get(pk=deferred.pk).message_id == first_id
    assert len(set(Delivery.objects.filter(campaign=campaign).values_list("message_id"))) == 6
