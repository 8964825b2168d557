"""Feedback events and stored inbound mail in the GDPR export, erasure and retention."""

import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from compliance.gdpr import gdpr_erase, gdpr_export, gdpr_retention_apply
from sending import personal_data
from sending.models import Delivery, FeedbackEvent, InboundMessage
from tests.factories import WorkspaceFactory
from tests.sending.feedback.sent_campaign import sent_campaign

pytestmark = pytest.mark.django_db


def _unrelated_inbound(**fields) -> InboundMessage:
    return InboundMessage.objects.create(raw=b"Subject: other\r\n\r\nnobody@mail.test", **fields)


def test_the_hooks_cover_feedback_events_and_inbound_messages():
    assert FeedbackEvent in personal_data.MODELS
    assert InboundMessage in personal_data.MODELS


def test_export_holds_the_persons_feedback_events_and_inbound_mail(workspace):
    sent = sent_campaign(workspace)
    sent_campaign(WorkspaceFactory())  # the same address in another workspace
    _unrelated_inbound(workspace=workspace)
    data = personal_data.export(workspace=workspace, email="HARD@mail.test")
    [event] = data["feedback_events"]
    assert event["address"] == "hard@mail.test"
    assert event["diagnostic"].startswith("smtp; 550 5.1.1")
    assert (event["kind"], event["bounce_class"], event["remote_mta"]) == (
        "bounce",
        "hard",
        "mx.mail.test",
    )
    [inbound] = data["inbound_messages"]
    assert "hard@mail.test: user unknown" in inbound["raw"]
    assert inbound["recipients"] == [f"bounces+{sent.hard.pk}@bounces.news.test"]
    [delivery] = data["deliveries"]
    assert delivery["bounced_at"] is not None


def test_export_finds_an_event_by_its_address_even_without_a_delivery(workspace):
    FeedbackEvent.objects.create(
        workspace=workspace, kind="complaint", address="Lost@Mail.test", source="anymail:ses"
    )
    data = personal_data.export(workspace=workspace, email="lost@mail.test")
    assert [row["source"] for row in data["feedback_events"]] == ["anymail:ses"]
    assert data["inbound_messages"] == []


def test_the_export_archive_serialises_the_new_tables(workspace):
    sent_campaign(workspace)
    name = gdpr_export(workspace=workspace, email="hard@mail.test")
    with default_storage.open(name) as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    document = json.loads(archive.read("personal-data.json"))
    assert document["tables"]["sending.inbound_messages"][0]["kind"] == "bounce"
    assert "tables/sending.feedback_events.csv" in archive.namelist()


def test_erase_redacts_events_and_deletes_the_inbound_mail_of_that_address(workspace):
    sent = sent_campaign(workspace)
    other_workspace = sent_campaign(WorkspaceFactory())
    unrelated = _unrelated_inbound(workspace=workspace)
    gdpr_erase(workspace=workspace, email="hard@mail.test", acting_user=None)

    event = FeedbackEvent.objects.get(delivery=sent.hard)
    assert event.address == f"erased-{event.pk}"
    assert event.diagnostic == ""
    assert (event.kind, event.bounce_class, event.status) == ("bounce", "hard", "5.1.1")
    assert not InboundMessage.objects.filter(pk=sent.inbound.pk).exists()
    assert InboundMessage.objects.filter(pk=unrelated.pk).exists()
    assert Delivery.objects.get(pk=sent.hard.pk).address == f"erased-{sent.hard.pk}"
    # Other people's events, and the same address in another workspace, stay.
    assert FeedbackEvent.objects.get(delivery=sent.complained).address == "spam@mail.test"
    assert InboundMessage.objects.filter(pk=other_workspace.inbound.pk).exists()
    theirs = FeedbackEvent.objects.get(delivery=other_workspace.hard)
    assert theirs.address == "hard@mail.test"
    assert personal_data.export(workspace=workspace, email="hard@mail.test") == {
        "deliveries": [],
        "delivery_attempts": [],
        "feedback_events": [],
        "inbound_messages": [],
    }


def test_inbound_mail_goes_after_its_own_short_retention(settings, workspace):
    settings.INBOUND_RETENTION_DAYS = 30
    settings.RETENTION_MONTHS = 24
    now = timezone.now()
    old = _unrelated_inbound(received_at=now - timedelta(days=31))
    recent = _unrelated_inbound(received_at=now - timedelta(days=29))
    counts = gdpr_retention_apply(now=now)
    assert counts["sending"] == 1
    assert not InboundMessage.objects.filter(pk=old.pk).exists()
    assert InboundMessage.objects.filter(pk=recent.pk).exists()


def test_the_general_retention_applies_to_inbound_mail_when_it_is_shorter(settings):
    settings.INBOUND_RETENTION_DAYS = 400
    settings.RETENTION_MONTHS = 1
    now = timezone.now()
    old = _unrelated_inbound(received_at=now - timedelta(days=40))
    gdpr_retention_apply(now=now)
    assert not InboundMessage.objects.filter(pk=old.pk).exists()


def test_feedback_events_past_retention_lose_address_and_diagnostic(settings, workspace):
    settings.RETENTION_MONTHS = 6
    settings.INBOUND_RETENTION_DAYS = 30
    sent = sent_campaign(workspace)
    now = timezone.now()
    FeedbackEvent.objects.filter(delivery=sent.hard).update(occurred_at=now - timedelta(days=200))
    assert gdpr_retention_apply(now=now)["sending"] == 1
    old = FeedbackEvent.objects.get(delivery=sent.hard)
    assert (old.address, old.diagnostic) == (f"erased-{old.pk}", "")
    assert old.bounce_class == "hard"
    assert FeedbackEvent.objects.get(delivery=sent.complained).address == "spam@mail.test"
    assert gdpr_retention_apply(now=now)["sending"] == 0  # idempotent


def test_erase_deletes_unmatched_inbound_mail_that_names_the_address(settings, workspace):
    settings.INBOUND_RETENTION_DAYS = 30
    sent_campaign(workspace)
    now = timezone.now()
    quoted = InboundMessage.objects.create(
        raw=b"Subject: Out of office\r\n\r\n\xff I am away. -- Hard@Mail.Test\x00\r\n"
    )
    sender = InboundMessage.objects.create(mail_from="HARD@mail.test", raw=b"Subject: hi\r\n\r\n")
    envelope = InboundMessage.objects.create(recipients=["hard@mail.test"], raw=b"x")
    someone_else = InboundMessage.objects.create(
        raw=b"Subject: x\r\n\r\nrichard@mail.test, hard@mail.test.uk", mail_from="x@mail.test"
    )
    near_miss = InboundMessage.objects.create(raw=b"Subject: x\r\n\r\nhardXmail.test")
    past_retention = InboundMessage.objects.create(
        raw=b"hard@mail.test", received_at=now - timedelta(days=31)
    )
    other_workspace = sent_campaign(WorkspaceFactory()).inbound

    gdpr_erase(workspace=workspace, email="hard@mail.test", acting_user=None)

    left = set(InboundMessage.objects.values_list("pk", flat=True))
    assert not {quoted.pk, sender.pk, envelope.pk} & left
    # Bounded: other addresses (even ones that contain it), rows retention deletes
    # anyway, and rows of another workspace (its own erasure covers them) are untouched.
    assert {someone_else.pk, near_miss.pk, past_retention.pk, other_workspace.pk} <= left
