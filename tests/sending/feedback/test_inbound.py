"""Stored inbound mail processed end to end (real raw messages, the real parser, the real
database): which delivery it is about, what is done, and what is left for review."""

import datetime as dt
import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from contacts.models import Contact, Subscription, Suppression
from espsite.celery import app
from sending import verp
from sending.feedback.report import FeedbackReport
from sending.models import Delivery, FeedbackEvent, InboundMessage
from sending.services.inbound import (
    MAILTO_UNSUBSCRIBE_SOURCE,
    inbound_ids_due,
    inbound_process,
    inbound_reprocess,
)
from sending.tasks import inbound_sweep_task
from tests.sending.feedback.test_services import DOMAIN, make_delivery

pytestmark = pytest.mark.django_db

State = Delivery.State
Status = InboundMessage.Status
RETURN_PATH_HOST = f"bounces.{DOMAIN}"


def bounces_address(delivery: Delivery) -> str:
    return verp.verp_address(delivery_id=delivery.pk, domain=RETURN_PATH_HOST)


def unsubscribe_address(delivery: Delivery) -> str:
    return verp.verp_address(
        delivery_id=delivery.pk, local=verp.UNSUBSCRIBE, domain=RETURN_PATH_HOST
    )


def original_headers(
    delivery: Delivery, *, message_id: str = "<spring.1@news.shop.example>"
) -> str:
    return (
        f"Return-Path: <{bounces_address(delivery)}>\r\n"
        f"From: Shop <hello@{DOMAIN}>\r\n"
        f"To: {delivery.address}\r\n"
        "Subject: Hi R1\r\n"
        f"Message-ID: {message_id}\r\n"
        f"List-Unsubscribe: <https://esp.example/u/x>, <mailto:{unsubscribe_address(delivery)}>\r\n"
    )


def postfix_dsn(
    *,
    to: str,
    recipients: list[tuple[str, str, str, str]],
    original: str = "",
) -> bytes:
    """A Postfix bounce: (address, action, status, diagnostic) per recipient."""
    fields = "".join(
        f"Final-Recipient: rfc822; {address}\r\n"
        f"Original-Recipient: rfc822;{address}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.mail.test\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        for address, action, status, diagnostic in recipients
    )
    delayed = all(action == "delayed" for _, action, _, _ in recipients)
    subject = (
        "Delayed Mail (still being retried)" if delayed else "Undelivered Mail Returned to Sender"
    )
    text = (
        "This is the mail system at host mx.mail.test.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        + "".join(f"<{r[0]}>: host mx.mail.test[192.0.2.10] said: {r[3]}\r\n" for r in recipients)
    )
    return (
        "Return-Path: <>\r\n"
        "Received: by mx.mail.test (Postfix) id 3F1A2C0042; Sun, 29 Nov 2026 09:30:00 +0000\r\n"
        "Date: Sun, 29 Nov 2026 09:30:00 +0000 (UTC)\r\n"
        "From: MAILER-DAEMON@mx.mail.test (Mail Delivery System)\r\n"
        f"Subject: {subject}\r\n"
        f"To: {to}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        '\tboundary="3F1A2C0042.1764408600/mx.mail.test"\r\n'
        "Message-Id: <20261129093000.3F1A2C0042@mx.mail.test>\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
        "--3F1A2C0042.1764408600/mx.mail.test\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{text}\r\n"
        "--3F1A2C0042.1764408600/mx.mail.test\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.mail.test\r\n"
        "X-Postfix-Queue-ID: 3F1A2C0042\r\n"
        "Arrival-Date: Sun, 29 Nov 2026 09:29:58 +0000 (UTC)\r\n\r\n"
        f"{fields}"
        "--3F1A2C0042.1764408600/mx.mail.test\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"{original}\r\n"
        "--3F1A2C0042.1764408600/mx.mail.test--\r\n"
    ).encode()


USER_UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in local recipient table"
MAILBOX_FULL = "452 4.2.2 <{}>: Mailbox full, try again later"


def hard_dsn(
    delivery: Delivery, *, to: str | None = None, address: str | None = None, **kw
) -> bytes:
    address = address or delivery.address
    return postfix_dsn(
        to=to or bounces_address(delivery),
        recipients=[(address, "failed", "5.1.1", USER_UNKNOWN.format(address))],
        **kw,
    )


def arf_report(*, feedback_type: str, original: str, recipient: str) -> bytes:
    return (
        "Return-Path: <>\r\n"
        "From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>\r\n"
        "To: fbl@inbound.testserver\r\n"
        "Subject: FW: Hi R1\r\n"
        "Date: Sun, 29 Nov 2026 09:40:00 +0000\r\n"
        "Message-ID: <arf-7731@arf.mail.yahoo.com>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"\r\n'
        "\r\n"
        "--ARF\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is an email abuse report for an email message received from IP\r\n"
        "198.51.100.7 on Sun, 29 Nov 2026 09:00:00 +0000.\r\n\r\n"
        "--ARF\r\n"
        "Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\n"
        "User-Agent: Yahoo!-Mail-Feedback/2.0\r\n"
        "Version: 1\r\n"
        f"Original-Mail-From: <bounces+redacted@{RETURN_PATH_HOST}>\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n"
        "Arrival-Date: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
        "Source-IP: 198.51.100.7\r\n"
        "Reported-Domain: news.shop.example\r\n\r\n"
        "--ARF\r\n"
        "Content-Type: message/rfc822\r\n\r\n"
        f"{original}"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello R1\r\n\r\n"
        "--ARF--\r\n"
    ).encode()


def stored(raw: bytes, *, to: str, mail_from: str = "", received_at=None) -> InboundMessage:
    return InboundMessage.objects.create(
        peer="127.0.0.1:40001",
        helo="mx.mail.test",
        mail_from=mail_from,
        recipients=[to],
        size=len(raw),
        raw=raw,
        **({"received_at": received_at} if received_at else {}),
    )


def process(raw: bytes, *, to: str, **kw) -> InboundMessage:
    row = stored(raw, to=to, **kw)
    inbound_process(inbound_id=row.pk)
    row.refresh_from_db()
    return row


# --- bounces --------------------------------------------------------------------------------


def test_hard_dsn_to_the_verp_address_bounces_suppresses_and_marks_the_contact():
    delivery = make_delivery()
    row = process(hard_dsn(delivery), to=bounces_address(delivery))

    assert (row.status, row.kind, row.error) == (Status.PROCESSED, "bounce", "")
    assert (row.delivery_id, row.workspace_id) == (delivery.pk, delivery.workspace_id)
    assert row.processed_at is not None
    assert row.attempt_count == 1
    assert row.summary["kind"] == "bounce"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.bounce_class) == (State.BOUNCED, "hard")
    event = FeedbackEvent.objects.get()
    assert (event.kind, event.status, event.source) == ("bounce", "5.1.1", "inbound")
    assert event.inbound_message_id == row.pk
    assert "User unknown" in event.diagnostic
    assert Suppression.objects.get(workspace=delivery.workspace).reason == "hard_bounce"
    assert Contact.objects.get(pk=delivery.contact_id).status == Contact.Status.BOUNCED


def test_processing_twice_does_nothing_the_second_time():
    delivery = make_delivery()
    row = process(hard_dsn(delivery), to=bounces_address(delivery))
    again = inbound_process(inbound_id=row.pk)
    assert again.status == Status.PROCESSED
    assert again.attempt_count == 1
    assert FeedbackEvent.objects.count() == 1
    assert inbound_process(inbound_id=row.pk + 1000) is None


def test_delivery_found_by_the_quoted_return_path_when_the_envelope_lost_it():
    delivery = make_delivery()
    raw = hard_dsn(
        delivery, to="postmaster@" + RETURN_PATH_HOST, original=original_headers(delivery)
    )
    row = process(raw, to="postmaster@" + RETURN_PATH_HOST)
    assert (row.status, row.delivery_id) == (Status.PROCESSED, delivery.pk)
    assert Delivery.objects.get(pk=delivery.pk).state == State.BOUNCED


def test_delivery_found_by_the_quoted_list_unsubscribe_mailto():
    delivery = make_delivery()
    headers = original_headers(delivery).replace(
        f"Return-Path: <{bounces_address(delivery)}>\r\n", ""
    )
    row = process(hard_dsn(delivery, to="x@example.net", original=headers), to="x@example.net")
    assert (row.status, row.delivery_id) == (Status.PROCESSED, delivery.pk)


def test_delivery_found_by_the_original_message_id():
    delivery = make_delivery(message_id="<c0ffee.42@news.shop.example>")
    headers = (
        f"From: Shop <hello@{DOMAIN}>\r\nTo: {delivery.address}\r\n"
        "Message-ID: <c0ffee.42@news.shop.example>\r\nSubject: Hi\r\n"
    )
    row = process(hard_dsn(delivery, to="x@example.net", original=headers), to="x@example.net")
    assert (row.status, row.delivery_id) == (Status.PROCESSED, delivery.pk)
    assert Suppression.objects.filter(workspace=delivery.workspace).exists()


def test_forged_verp_token_names_nothing_and_is_left_for_review():
    delivery = make_delivery()
    genuine = bounces_address(delivery)
    local, _, host = genuine.partition("@")
    forged = f"{local[:-4]}aaaa@{host}"
    row = process(hard_dsn(delivery, to=forged), to=forged)
    assert row.status == Status.UNPARSED
    assert "not a genuine VERP address" in row.error
    assert row.delivery_id is None
    assert not FeedbackEvent.objects.exists()
    assert not Suppression.objects.exists()
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


def test_a_verp_token_of_one_workspace_never_touches_another():
    mine = make_delivery(address="shared@mail.test")
    theirs = make_delivery(address="shared@mail.test")  # another workspace, same address
    assert mine.workspace_id != theirs.workspace_id
    row = process(hard_dsn(mine), to=bounces_address(mine))
    assert row.workspace_id == mine.workspace_id
    assert Suppression.objects.filter(workspace=mine.workspace).exists()
    assert not Suppression.objects.filter(workspace=theirs.workspace).exists()
    assert Delivery.objects.get(pk=theirs.pk).state == State.SENT
    assert Contact.objects.get(pk=theirs.contact_id).status == Contact.Status.ACTIVE


def test_a_forwarded_address_bounces_the_delivery_its_verp_address_names():
    delivery = make_delivery()
    row = process(
        hard_dsn(delivery, address="reader@forwarded.example"), to=bounces_address(delivery)
    )
    assert row.status == Status.PROCESSED
    assert Suppression.objects.get(workspace=delivery.workspace).email == delivery.address


def test_a_report_about_other_addresses_found_by_message_id_is_left_for_review():
    delivery = make_delivery(message_id="<m.7@news.shop.example>")
    headers = f"Message-ID: <m.7@news.shop.example>\r\nTo: {delivery.address}\r\n"
    raw = postfix_dsn(
        to="x@example.net",
        recipients=[
            ("a@other.test", "failed", "5.1.1", USER_UNKNOWN.format("a@other.test")),
            ("b@other.test", "failed", "5.1.1", USER_UNKNOWN.format("b@other.test")),
        ],
        original=headers,
    )
    row = process(raw, to="x@example.net")
    assert row.status == Status.UNPARSED
    assert "No recipient of the report" in row.error
    assert not Suppression.objects.exists()


def test_delay_report_records_a_deferral_and_changes_nothing():
    delivery = make_delivery()
    raw = postfix_dsn(
        to=bounces_address(delivery),
        recipients=[(delivery.address, "delayed", "4.2.2", MAILBOX_FULL.format(delivery.address))],
    )
    row = process(raw, to=bounces_address(delivery))
    assert row.status == Status.PROCESSED
    event = FeedbackEvent.objects.get()
    assert event.kind == FeedbackEvent.Kind.DEFERRAL
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT
    assert not Suppression.objects.exists()


def test_a_bounce_that_beats_the_pipeline_waits_for_the_sweep(settings, eager):
    settings.INBOUND_SWEEP_SECONDS = 60
    delivery = make_delivery(state=State.IN_FLIGHT)
    earlier = timezone.now() - dt.timedelta(minutes=5)
    row = process(hard_dsn(delivery), to=bounces_address(delivery), received_at=earlier)
    assert row.status == Status.RECEIVED
    assert "still being sent" in row.error
    assert row.attempt_count == 1
    assert not FeedbackEvent.objects.exists()
    assert Delivery.objects.get(pk=delivery.pk).state == State.IN_FLIGHT

    Delivery.objects.filter(pk=delivery.pk).update(state=State.SENT, lease_token=None)
    assert inbound_ids_due() == [row.pk]
    with eager():
        assert inbound_sweep_task.apply().get() == 1
    row.refresh_from_db()
    assert (row.status, row.attempt_count, row.error) == (Status.PROCESSED, 2, "")
    assert Delivery.objects.get(pk=delivery.pk).state == State.BOUNCED


# --- complaints, auto-replies, unsubscribes -------------------------------------------------


def test_arf_complaint_unsubscribes_suppresses_and_counts():
    delivery = make_delivery()
    raw = arf_report(
        feedback_type="abuse", original=original_headers(delivery), recipient=delivery.address
    )
    row = process(raw, to="fbl@inbound.testserver")
    assert (row.status, row.kind, row.delivery_id) == (Status.PROCESSED, "complaint", delivery.pk)
    assert FeedbackEvent.objects.get().feedback_type == "abuse"
    assert Delivery.objects.get(pk=delivery.pk).complained_at is not None
    assert Suppression.objects.get(workspace=delivery.workspace).reason == "complaint"
    contact = Contact.objects.get(pk=delivery.contact_id)
    assert contact.status == Contact.Status.COMPLAINED
    assert not Subscription.objects.filter(contact=contact, status="subscribed").exists()


@pytest.mark.parametrize("feedback_type", ["not-spam", "auth-failure"])
def test_reports_that_are_not_a_recipients_complaint_are_ignored(feedback_type):
    delivery = make_delivery()
    raw = arf_report(
        feedback_type=feedback_type,
        original=original_headers(delivery),
        recipient=delivery.address,
    )
    row = process(raw, to="fbl@inbound.testserver")
    assert row.status == Status.IGNORED
    assert not FeedbackEvent.objects.exists()
    assert not Suppression.objects.exists()


def test_out_of_office_reply_is_ignored():
    delivery = make_delivery()
    raw = (
        f"From: Reader <{delivery.address}>\r\n"
        f"To: {bounces_address(delivery)}\r\n"
        "Subject: Out of Office: Hi R1\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "X-Autoreply: yes\r\n"
        "Date: Sun, 29 Nov 2026 09:40:00 +0000\r\n"
        "Message-ID: <ooo.1@mail.test>\r\n\r\n"
        "I am out of the office until Monday.\r\n"
    ).encode()
    row = process(raw, to=bounces_address(delivery))
    assert (row.status, row.kind) == (Status.IGNORED, "auto_reply")
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


def test_garbage_is_left_for_review_and_never_acted_on():
    delivery = make_delivery()
    raw = b"\x00\xff\xfe garbage \x80\x81\r\nnot: a message\r\n\r\n\xc3\x28" * 20
    row = process(raw, to=bounces_address(delivery))
    assert row.status == Status.UNPARSED
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT
    assert not Suppression.objects.exists()


def test_mail_to_the_list_unsubscribe_address_leaves_every_list():
    delivery = make_delivery(lists=3)
    address = unsubscribe_address(delivery)
    raw = (
        f"From: {delivery.address}\r\nTo: {address}\r\nSubject: unsubscribe\r\n"
        "Date: Sun, 29 Nov 2026 09:40:00 +0000\r\n\r\n"
    ).encode()
    row = process(raw, to=address)

    assert (row.status, row.kind, row.delivery_id) == (Status.PROCESSED, "unsubscribe", delivery.pk)
    contact = Contact.objects.get(pk=delivery.contact_id)
    assert not Subscription.objects.filter(contact=contact, status="subscribed").exists()
    records = contact.consent_records.filter(action="withdrawn")
    assert records.count() == 3
    assert {record.source for record in records} == {MAILTO_UNSUBSCRIBE_SOURCE}
    assert {record.campaign_id for record in records} == {delivery.campaign_id}
    assert Suppression.objects.get(workspace=delivery.workspace).reason == "unsubscribed"
    assert FeedbackEvent.objects.get().kind == FeedbackEvent.Kind.UNSUBSCRIBE


def test_unsubscribe_token_is_not_good_as_a_bounce_token():
    delivery = make_delivery()
    swapped = unsubscribe_address(delivery).replace("unsubscribe+", "bounces+")
    row = process(hard_dsn(delivery, to=swapped), to=swapped)
    assert row.status == Status.UNPARSED
    assert not Suppression.objects.exists()


# --- failures and the sweep -----------------------------------------------------------------


@pytest.fixture
def eager(django_capture_on_commit_callbacks):
    was_eager, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        yield lambda: django_capture_on_commit_callbacks(execute=True)
    finally:
        app.conf.task_always_eager = was_eager


def test_an_exception_marks_the_row_failed_and_the_sweep_leaves_it(monkeypatch, settings):
    settings.INBOUND_SWEEP_SECONDS = 60
    delivery = make_delivery()

    def broken(raw):
        raise ValueError("parser exploded on this one")

    monkeypatch.setattr("sending.services.inbound.feedback_parse", broken)
    earlier = timezone.now() - dt.timedelta(minutes=5)
    row = process(hard_dsn(delivery), to=bounces_address(delivery), received_at=earlier)
    assert row.status == Status.FAILED
    assert "parser exploded on this one" in row.error
    assert inbound_process(inbound_id=row.pk).attempt_count == 1
    assert inbound_ids_due() == []
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


def test_an_operator_reprocesses_a_failed_row(monkeypatch, eager):
    delivery = make_delivery()
    monkeypatch.setattr(
        "sending.services.inbound.feedback_parse",
        lambda raw: (_ for _ in ()).throw(RuntimeError("boom")),
    )
    row = process(hard_dsn(delivery), to=bounces_address(delivery))
    assert row.status == Status.FAILED
    monkeypatch.undo()

    with eager():
        inbound_reprocess(inbound=row, acting_user=None)
    row.refresh_from_db()
    assert (row.status, row.attempt_count) == (Status.PROCESSED, 2)
    assert Delivery.objects.get(pk=delivery.pk).state == State.BOUNCED


def test_sweep_reenqueues_only_rows_waiting_longer_than_the_interval(settings, eager):
    settings.INBOUND_SWEEP_SECONDS = 60
    delivery = make_delivery()
    old = stored(
        hard_dsn(delivery),
        to=bounces_address(delivery),
        received_at=timezone.now() - dt.timedelta(minutes=2),
    )
    fresh = stored(hard_dsn(delivery), to=bounces_address(delivery))
    done = stored(b"x", to="x@example.net", received_at=timezone.now() - dt.timedelta(hours=1))
    InboundMessage.objects.filter(pk=done.pk).update(status=Status.UNPARSED)

    with eager():
        assert inbound_sweep_task.apply().get() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == Status.PROCESSED
    assert fresh.status == Status.RECEIVED
    assert InboundMessage.objects.get(pk=done.pk).status == Status.UNPARSED


def test_sweep_takes_at_most_its_cap_oldest_first(settings):
    settings.INBOUND_SWEEP_SECONDS = 60
    base = timezone.now() - dt.timedelta(hours=1)
    rows = [
        stored(b"x", to="x@example.net", received_at=base + dt.timedelta(seconds=i))
        for i in range(5)
    ]
    assert inbound_ids_due(limit=3) == [row.pk for row in rows[:3]]


@pytest.mark.django_db(transaction=True)
def test_a_row_another_worker_holds_is_skipped_not_waited_for():
    delivery = make_delivery()
    row = stored(hard_dsn(delivery), to=bounces_address(delivery))
    locked, release = threading.Event(), threading.Event()

    def other_worker():
        try:
            with transaction.atomic():
                InboundMessage.objects.select_for_update().get(pk=row.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        skipped = inbound_process(inbound_id=row.pk)
        assert (skipped.status, skipped.attempt_count) == (Status.RECEIVED, 0)
        assert not FeedbackEvent.objects.exists()
    finally:
        release.set()
        thread.join(10)
    assert inbound_process(inbound_id=row.pk).status == Status.PROCESSED


def test_text_postgresql_refuses_is_cleaned_not_a_reason_to_fail(monkeypatch):
    odd = FeedbackReport(kind="unknown", subject="\x00bad\udcff bytes", notes=("nul\x00",))
    monkeypatch.setattr("sending.services.inbound.feedback_parse", lambda raw: odd)
    row = process(b"Subject: x\r\n\r\n", to="x@example.net")
    assert row.status == Status.UNPARSED
    assert row.summary["subject"] == "bad? bytes"
    assert row.summary["notes"] == ["nul"]
