"""The operators' review of inbound mail in the admin: the list opens on what was not
understood, a message's raw text is shown escaped, and the actions process or ignore."""

import pytest
from django.urls import reverse

from accounts.models import AuditEntry
from sending.admin import RAW_SHOWN_BYTES
from sending.models import FeedbackEvent, InboundMessage
from tests.sending.feedback.sent_campaign import sent_campaign

pytestmark = pytest.mark.django_db

LIST = "/admin/sending/inboundmessage/"


def _inbound(status="unparsed", raw=b"Subject: ?\r\n\r\nnot a bounce\r\n", **fields):
    fields.setdefault("mail_from", f"{status}@relay.test")
    fields.setdefault("recipients", ["bounces+abc@bounces.news.test"])
    return InboundMessage.objects.create(raw=raw, size=len(raw), status=status, **fields)


def test_the_list_opens_on_messages_to_review_and_filters_by_status_and_kind(operator_client):
    _inbound("unparsed", kind="unknown", error="No recipient found.")
    _inbound("failed", kind="bounce", error="Traceback: boom")
    _inbound("processed", kind="bounce")
    _inbound("ignored", kind="auto_reply")

    default = operator_client.get(LIST).content.decode()
    assert "unparsed@relay.test" in default
    assert "failed@relay.test" in default
    assert "processed@relay.test" not in default
    assert "No recipient found." in default
    assert "bounces+abc@bounces.news.test" in default

    processed = operator_client.get(LIST + "?status=processed").content.decode()
    assert "processed@relay.test" in processed
    assert "unparsed@relay.test" not in processed
    everything = operator_client.get(LIST + "?status=all").content.decode()
    assert all(f"{s}@relay.test" in everything for s in ("unparsed", "processed", "ignored"))
    replies = operator_client.get(LIST + "?status=all&kind__exact=auto_reply").content.decode()
    assert "ignored@relay.test" in replies
    assert "processed@relay.test" not in replies


def test_the_raw_message_is_shown_as_escaped_text_with_the_parser_summary(operator_client):
    raw = (
        b"From: MAILER-DAEMON@relay.test\r\nContent-Type: text/html\r\n\r\n"
        b"<script>alert('pwned')</script><b>bold</b>\r\n"
    )
    inbound = _inbound(raw=raw, summary={"kind": "unknown", "notes": ["no <status> part"]})
    page = operator_client.get(reverse("admin:sending_inboundmessage_change", args=[inbound.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in content
    assert "<script>alert(" not in content
    assert "no &lt;status&gt; part" in content
    assert 'class="inbound-raw"' in content


def test_a_huge_raw_message_is_cut(operator_client):
    raw = b"X-Pad: " + b"a" * (RAW_SHOWN_BYTES + 5000) + b"\r\n\r\nTHE-END"
    inbound = _inbound(raw=raw)
    page = operator_client.get(reverse("admin:sending_inboundmessage_change", args=[inbound.pk]))
    content = page.content.decode()
    assert "THE-END" not in content
    assert f"{len(raw) - RAW_SHOWN_BYTES} more bytes not shown" in content


def test_inbound_messages_are_read_only(operator_client):
    inbound = _inbound()
    url = reverse("admin:sending_inboundmessage_change", args=[inbound.pk])
    operator_client.post(url, {"status": "processed"})
    inbound.refresh_from_db()
    assert inbound.status == "unparsed"
    assert operator_client.get(reverse("admin:sending_inboundmessage_add")).status_code == 403
    assert (
        operator_client.get(reverse("admin:sending_inboundmessage_delete", args=[inbound.pk]))
    ).status_code == 403


def test_mark_ignored_action(operator_client):
    first, second, other = _inbound(), _inbound("failed"), _inbound()
    response = operator_client.post(
        LIST, {"action": "mark_ignored", "_selected_action": [first.pk, second.pk]}, follow=True
    )
    assert "Marked 2 message(s) ignored." in response.content.decode()
    assert set(InboundMessage.objects.filter(status="ignored").values_list("pk", flat=True)) == {
        first.pk,
        second.pk,
    }
    other.refresh_from_db()
    assert other.status == "unparsed"
    first.refresh_from_db()
    assert first.processed_at is not None


def test_process_again_action_hands_each_selected_message_back_to_processing(
    operator_client, django_capture_on_commit_callbacks
):
    inbound, untouched = _inbound(), _inbound()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = operator_client.post(
            LIST, {"action": "process_again", "_selected_action": [inbound.pk]}, follow=True
        )
    assert response.status_code == 200
    assert "Processed 1 message(s) again." in response.content.decode()
    assert len(callbacks) == 1  # one processing task queued, for the selected message
    inbound.refresh_from_db()
    assert inbound.attempt_count == 1  # the task ran: read again, whatever it concluded
    assert inbound.status != "received"
    entry = AuditEntry.objects.get(verb="inbound.reprocessed")
    assert entry.actor == operator_client.user
    untouched.refresh_from_db()
    assert untouched.attempt_count == 0


def test_feedback_events_are_listed_read_only_with_filters(operator_client, workspace):
    sent_campaign(workspace)
    url = "/admin/sending/feedbackevent/"
    everything = operator_client.get(url).content.decode()
    assert "hard@mail.test" in everything
    assert "spam@mail.test" in everything
    hard = operator_client.get(url + "?bounce_class__exact=hard").content.decode()
    assert "hard@mail.test" in hard
    assert "spam@mail.test" not in hard
    complaints = operator_client.get(url + "?kind__exact=complaint").content.decode()
    assert "spam@mail.test" in complaints
    assert "hard@mail.test" not in complaints
    by_source = operator_client.get(url + "?source__exact=anymail:mailgun").content.decode()
    assert "spam@mail.test" in by_source
    assert "bye@mail.test" not in by_source
    event = FeedbackEvent.objects.get(kind="bounce")
    change = reverse("admin:sending_feedbackevent_change", args=[event.pk])
    assert operator_client.get(change).status_code == 200
    operator_client.post(change, {"diagnostic": "changed"})
    event.refresh_from_db()
    assert event.diagnostic.startswith("smtp; 550 5.1.1")


def test_a_member_who_is_not_staff_cannot_open_the_review_list(member_client, workspace):
    client = member_client(workspace)
    response = client.get(LIST)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
