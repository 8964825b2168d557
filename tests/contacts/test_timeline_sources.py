"""A contact's timeline merges what higher apps register in contacts.timeline: sending adds
sends, bounces, complaints and unsubscribes by email, in a bounded number of queries."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from contacts import selectors
from contacts.models import Contact
from contacts.timeline import TimelineEvent, timeline_sources
from sending.models import Delivery, FeedbackEvent
from sending.selectors import contact_delivery_timeline
from tests.sending.feedback.sent_campaign import sent_campaign

pytestmark = pytest.mark.django_db


def _titles(contact) -> list[str]:
    return [
        event.title for event in selectors.contact_timeline(contact=contact, consent_records=[])
    ]


def test_sending_registers_its_source():
    assert contact_delivery_timeline in timeline_sources.sources


def test_a_registered_source_joins_the_timeline_in_order(workspace):
    contact = Contact.objects.create(workspace=workspace, email="x@mail.test")
    later = timezone.now() + dt.timedelta(days=1)

    def source(seen) -> list[TimelineEvent]:
        return [TimelineEvent(at=later, kind="test", title=f"Seen {seen.email}")]

    timeline_sources.register(source)
    timeline_sources.register(source)  # once only
    try:
        assert _titles(contact)[0] == "Seen x@mail.test"
        assert _titles(contact).count("Seen x@mail.test") == 1
    finally:
        timeline_sources.sources.remove(source)


def test_the_timeline_shows_sends_bounces_complaints_and_unsubscribes(workspace):
    first = sent_campaign(workspace, name="Launch")
    contact = first.contact
    # The same contact in a second campaign: it complained, then unsubscribed by email.
    second = sent_campaign(workspace, name="Autumn", contact=contact)
    Delivery.objects.filter(pk=second.hard.pk).update(
        state="sent", bounce_class="", bounced_at=None, complained_at=timezone.now()
    )
    FeedbackEvent.objects.filter(delivery=second.hard).update(kind="unsubscribe", bounce_class="")
    titles = _titles(contact)
    assert "Sent: Launch" in titles
    assert (
        "Bounced (hard): Launch — smtp; 550 5.1.1 <hard@mail.test>: Recipient address "
        "rejected: User unknown" in titles
    )
    assert "Sent: Autumn" in titles
    assert "Complained: Autumn" in titles
    assert "Unsubscribed by email" in titles
    assert "Bounced (hard): Autumn" not in " ".join(titles)
    # Other contacts' deliveries stay out.
    assert not any("spam@" in title or title == "Complained: Launch" for title in titles)


def test_a_bounce_at_the_relay_shows_its_answer(workspace):
    sent = sent_campaign(workspace)
    Delivery.objects.filter(pk=sent.block.pk).update(contact=sent.contact)
    Delivery.objects.filter(pk=sent.hard.pk).update(contact=None)
    titles = _titles(sent.contact)
    assert any(
        t.startswith("Bounced (block): Launch — 554 5.7.1 Service unavailable") for t in titles
    )
    assert not any(t.startswith("Sent:") for t in titles)  # it never left


def test_the_timeline_source_runs_two_queries_whatever_the_history(
    workspace, django_assert_num_queries
):
    contact = sent_campaign(workspace, name="c0").contact
    for n in range(1, 6):
        sent_campaign(workspace, name=f"c{n}", contact=contact)
    with django_assert_num_queries(2):
        events = contact_delivery_timeline(contact)
    assert len([e for e in events if e.kind == "bounced"]) == 6
    assert len([e for e in events if e.kind == "sent"]) == 6


def test_a_contact_without_deliveries_costs_one_query(workspace, django_assert_num_queries):
    contact = Contact.objects.create(workspace=workspace, email="new@mail.test")
    with django_assert_num_queries(1):
        assert contact_delivery_timeline(contact) == []


def test_the_contact_page_shows_the_bounce(workspace, member_client):
    sent = sent_campaign(workspace)
    url = reverse(
        "contacts:contact_detail",
        kwargs={"workspace_slug": workspace.slug, "contact_id": sent.contact.pk},
    )
    content = member_client(workspace, Role.VIEWER).get(url).content.decode()
    assert 'class="timeline-bounced"' in content
    assert "Bounced (hard): Launch" in content
    assert 'class="timeline-sent"' in content
