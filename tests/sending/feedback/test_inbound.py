"""Stored inbound mail processed end to end (real raw messages, the real parser, the real
database): which delivery it is about, what is done, and what is left for review."""

import datetime as dt
import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import AuditEntry
from contacts.models import Contact, Subscription, Suppression
from espsite.celery import app
from sending import verp
from sending.feedback.report import FeedbackReport
from sending.models import Delivery, FeedbackEvent, InboundMessage
from sending.services.feedback import DeliveryBusy, bounce_record, delivery_for_feedback
from sending.services.inbound import (
    INBOUND_MAX_UNFINISHED,
    LOOP_NOTE,
    MAILTO_UNSUBSCRIBE_SOURCE,
    inbound_ids_due,
    inbound_ignore,
    inbound_process,
    inbound_reprocess,
    inbound_store,
    inbound_sweep,
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

    # Not handed over again before its back-off has passed.
    assert row.next_attempt_at > timezone.now() + dt.timedelta(seconds=50)
    assert inbound_ids_due() == []

    Delivery.objects.filter(pk=delivery.pk).update(state=State.SENT, lease_token=None)
    InboundMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
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


# --- attempts committed before reading; the sweep's hand-over ---------------------------------


class WorkerKilled(BaseException):
    """What a hard time limit or the OOM killer does to a task: nothing of it finishes."""


def test_an_attempt_is_committed_before_the_message_is_read(monkeypatch, settings):
    settings.INBOUND_SWEEP_SECONDS = 60
    delivery = make_delivery()
    row = stored(hard_dsn(delivery), to=bounces_address(delivery))

    def killed(raw):
        # What another connection sees while the message is read: the attempt, committed.
        seen = InboundMessage.objects.get(pk=row.pk)
        assert (seen.attempt_count, seen.status) == (1, Status.RECEIVED)
        raise WorkerKilled

    monkeypatch.setattr("sending.services.inbound.feedback_parse", killed)
    with pytest.raises(WorkerKilled):
        inbound_process(inbound_id=row.pk)
    row.refresh_from_db()
    assert (row.status, row.attempt_count) == (Status.RECEIVED, 1)
    assert row.error.startswith("Attempt 1 in a row did not finish")
    assert row.next_attempt_at > timezone.now() + dt.timedelta(seconds=50)
    assert inbound_ids_due() == []  # not before its back-off


def test_a_message_that_kills_its_worker_fails_after_five_unfinished_attempts(monkeypatch):
    delivery = make_delivery()
    row = stored(hard_dsn(delivery), to=bounces_address(delivery))
    reads = []

    def killed(raw):
        reads.append(1)
        raise WorkerKilled

    monkeypatch.setattr("sending.services.inbound.feedback_parse", killed)
    backoffs = []
    for _ in range(INBOUND_MAX_UNFINISHED):
        with pytest.raises(WorkerKilled):
            inbound_process(inbound_id=row.pk)
        row.refresh_from_db()
        backoffs.append(row.next_attempt_at - timezone.now())
        InboundMessage.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        assert inbound_ids_due() == [row.pk]
    assert backoffs == sorted(backoffs)  # each wait longer than the last

    done = inbound_process(inbound_id=row.pk)
    assert len(reads) == INBOUND_MAX_UNFINISHED  # the sixth never reads it
    assert (done.status, done.attempt_count) == (Status.FAILED, INBOUND_MAX_UNFINISHED)
    assert "5 attempts in a row did not finish" in done.error
    assert inbound_ids_due() == []
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


def test_an_attempt_that_finishes_resets_the_count_of_unfinished_ones(monkeypatch):
    delivery = make_delivery()
    row = stored(hard_dsn(delivery), to=bounces_address(delivery))
    monkeypatch.setattr(
        "sending.services.inbound.feedback_parse",
        lambda raw: (_ for _ in ()).throw(WorkerKilled()),
    )
    with pytest.raises(WorkerKilled):
        inbound_process(inbound_id=row.pk)
    monkeypatch.undo()
    done = inbound_process(inbound_id=row.pk)
    assert (done.status, done.attempt_count, done.error) == (Status.PROCESSED, 2, "")
    assert done.next_attempt_at is None


def test_the_listener_store_sets_the_first_hand_over_and_enqueues_once(
    settings, django_capture_on_commit_callbacks
):
    settings.INBOUND_SWEEP_SECONDS = 60
    with django_capture_on_commit_callbacks() as callbacks:
        row = inbound_store(
            peer="127.0.0.1:1", helo="mx", mail_from="", recipients=["x@example.net"],
            size=1, raw=b"x",
        )  # fmt: skip
    assert len(callbacks) == 1
    assert row.next_attempt_at == row.received_at + dt.timedelta(seconds=60)
    assert inbound_sweep() == 0  # its first task may still be queued: no duplicate


def test_the_sweep_pushes_a_row_forward_so_it_is_not_queued_twice(
    settings, django_capture_on_commit_callbacks
):
    settings.INBOUND_SWEEP_SECONDS = 60
    row = stored(b"x", to="x@example.net")
    InboundMessage.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert inbound_sweep() == 1
        assert inbound_sweep() == 0
    assert len(callbacks) == 1
    row.refresh_from_db()
    assert row.next_attempt_at > timezone.now() + dt.timedelta(seconds=50)
    assert row.attempt_count == 0  # handing over is not an attempt


# --- the pipeline claiming a delivery while its bounce is read -------------------------------

CLAIMED = {
    "state": State.CLAIMED,
    "lease_token": uuid.uuid4(),
    "lease_expires_at": timezone.now() + dt.timedelta(minutes=5),
}


def test_a_delivery_claimed_again_after_it_was_read_makes_the_bounce_wait(monkeypatch):
    delivery = make_delivery(state=State.DEFERRED)
    row = stored(hard_dsn(delivery), to=bounces_address(delivery))
    real = delivery_for_feedback

    def read_then_claimed(delivery_id):
        found = real(delivery_id)  # read as deferred ...
        Delivery.objects.filter(pk=delivery_id).update(**CLAIMED)  # ... then claimed
        return found

    monkeypatch.setattr("sending.services.inbound.delivery_for_feedback", read_then_claimed)
    inbound_process(inbound_id=row.pk)
    row.refresh_from_db()
    assert row.status == Status.RECEIVED
    assert "still being sent" in row.error
    assert row.next_attempt_at > timezone.now()
    assert not FeedbackEvent.objects.exists()
    assert Delivery.objects.get(pk=delivery.pk).state == State.CLAIMED


@pytest.mark.django_db(transaction=True)
def test_bounce_record_waits_for_the_pipelines_lock_and_reports_busy():
    delivery = make_delivery(state=State.DEFERRED)
    locked, claimed = threading.Event(), threading.Event()

    def pipeline_claims():
        try:
            with transaction.atomic():
                Delivery.objects.select_for_update().get(pk=delivery.pk)
                locked.set()
                time.sleep(0.3)  # bounce_record is waiting on the row now
                Delivery.objects.filter(pk=delivery.pk).update(**CLAIMED)
            claimed.set()
        finally:
            connection.close()

    thread = threading.Thread(target=pipeline_claims)
    thread.start()
    try:
        assert locked.wait(10)
        with pytest.raises(DeliveryBusy):
            bounce_record(delivery=delivery, bounce_class="hard", source="inbound", event_id="x")
        # Busy means it read the claimed state, which exists only once the claim
        # committed: it waited for the pipeline's lock rather than act on "deferred".
        assert claimed.wait(10)
    finally:
        thread.join(10)
    assert not FeedbackEvent.objects.exists()
    assert not Suppression.objects.exists()


# --- GDPR: every row keeps the delivery its envelope names ----------------------------------


def test_an_out_of_office_reply_keeps_its_delivery_and_workspace():
    delivery = make_delivery()
    raw = (
        f"From: Reader <{delivery.address}>\r\nTo: {bounces_address(delivery)}\r\n"
        "Subject: Out of Office: Hi R1\r\nAuto-Submitted: auto-replied\r\n\r\n"
        "I am away until Monday; call me on 0117 496 0000.\r\n"
    ).encode()
    row = process(raw, to=bounces_address(delivery))
    assert (row.status, row.kind) == (Status.IGNORED, "auto_reply")
    assert (row.delivery_id, row.workspace_id) == (delivery.pk, delivery.workspace_id)


def test_mail_not_understood_keeps_the_delivery_its_envelope_names():
    delivery = make_delivery()
    row = process(b"\x00\xff garbage\r\n\r\n\x80", to=bounces_address(delivery))
    assert row.status == Status.UNPARSED
    assert (row.delivery_id, row.workspace_id) == (delivery.pk, delivery.workspace_id)
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


# --- loops and tokens that name nothing -----------------------------------------------------

BOUNCE_HEADERS = (
    "From: MAILER-DAEMON@mx.elsewhere.test (Mail Delivery System)\r\n"
    "To: someone@elsewhere.test\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "Message-ID: <bounce.9@mx.elsewhere.test>\r\n"
)


def test_a_bounce_of_a_bounce_is_left_for_review_never_acted_on():
    delivery = make_delivery()
    raw = hard_dsn(delivery, original=BOUNCE_HEADERS)
    row = process(raw, to=bounces_address(delivery))
    assert LOOP_NOTE in row.summary["notes"]
    assert row.status == Status.UNPARSED
    assert "loop" in row.error
    assert row.delivery_id == delivery.pk  # kept for GDPR, not acted on
    assert not FeedbackEvent.objects.exists()
    assert not Suppression.objects.exists()
    assert Delivery.objects.get(pk=delivery.pk).state == State.SENT


def test_a_genuine_token_of_a_deleted_delivery_is_reviewed_not_matched_otherwise():
    other = make_delivery(message_id="<m.8@news.shop.example>")
    gone = make_delivery(address="gone@mail.test")
    address = bounces_address(gone)
    Delivery.objects.filter(pk=gone.pk).delete()
    headers = f"Message-ID: <m.8@news.shop.example>\r\nTo: {other.address}\r\n"
    row = process(hard_dsn(other, to=address, original=headers), to=address)
    assert row.status == Status.UNPARSED
    assert f"names delivery {gone.pk}, not found" in row.error
    assert row.delivery_id is None
    assert Delivery.objects.get(pk=other.pk).state == State.SENT
    assert not Suppression.objects.exists()


def test_a_token_of_another_workspace_acts_only_on_that_workspaces_delivery():
    mine = make_delivery(address="a@mail.test")
    theirs = make_delivery(address="b@mail.test")
    # Their token, at my return-path host, quoting my message: their delivery, nobody else.
    row = process(hard_dsn(theirs, original=original_headers(mine)), to=bounces_address(theirs))
    assert (row.delivery_id, row.workspace_id) == (theirs.pk, theirs.workspace_id)
    assert Delivery.objects.get(pk=mine.pk).state == State.SENT
    assert not Suppression.objects.filter(workspace=mine.workspace).exists()
    assert Contact.objects.get(pk=mine.contact_id).status == Contact.Status.ACTIVE


# --- the same message received twice -------------------------------------------------------


def test_the_same_bounce_received_twice_is_acted_on_once():
    delivery = make_delivery()
    raw = hard_dsn(delivery)
    first = process(raw, to=bounces_address(delivery))
    second = process(raw, to=bounces_address(delivery))  # the MTA never saw our 250
    assert (first.status, second.status) == (Status.PROCESSED, Status.PROCESSED)
    assert f"A copy of inbound #{first.pk}" in second.error
    event = FeedbackEvent.objects.get()
    assert event.inbound_message_id == first.pk
    assert event.event_id.startswith("mid:")


def test_a_different_bounce_for_the_same_delivery_is_another_event():
    delivery = make_delivery()
    first = hard_dsn(delivery)
    second = first.replace(b"3F1A2C0042@mx.mail.test>", b"3F1A2C0099@mx.mail.test>")
    assert first != second
    process(first, to=bounces_address(delivery))
    process(second, to=bounces_address(delivery))
    assert FeedbackEvent.objects.count() == 2


def test_the_same_complaint_received_twice_is_acted_on_once():
    delivery = make_delivery()
    raw = arf_report(
        feedback_type="abuse", original=original_headers(delivery), recipient=delivery.address
    )
    process(raw, to="fbl@inbound.testserver")
    process(raw, to="fbl@inbound.testserver")
    assert FeedbackEvent.objects.filter(kind="complaint").count() == 1


# --- an operator sets messages aside ------------------------------------------------------


def test_ignoring_messages_goes_through_the_service_with_an_audit_entry():
    delivery = make_delivery()
    row = stored(b"x", to="x@example.net")
    InboundMessage.objects.filter(pk=row.pk).update(
        status=Status.UNPARSED, workspace=delivery.workspace
    )
    already = stored(b"y", to="x@example.net")
    InboundMessage.objects.filter(pk=already.pk).update(status=Status.IGNORED)

    assert inbound_ignore(inbound_ids=[row.pk, already.pk], acting_user=None) == 1
    row.refresh_from_db()
    assert (row.status, row.next_attempt_at) == (Status.IGNORED, None)
    assert row.processed_at is not None
    [entry] = AuditEntry.objects.filter(verb="inbound.ignored")
    assert (entry.target_id, entry.workspace_id) == (str(row.pk), delivery.workspace_id)
    assert entry.details["previous_status"] == Status.UNPARSED
