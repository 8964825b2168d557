"""Refusals during the pipeline's own SMTP session are feedback too: each bounce (and each
deferral about us) becomes a FeedbackEvent of source "smtp", in one insert per chunk, so
that the soft-bounce rule and the per-domain block counts see them like reports by mail,
without counting a delivery twice."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.models import Contact, Suppression
from sending.models import Delivery, FeedbackEvent
from sending.pipeline import campaigns_start_due, chunk_send
from sending.selectors import feedback_block_counts, feedback_rates
from tests.sending.test_pipeline import DOMAIN, _drain, campaign_factory, sink  # noqa: F401

pytestmark = pytest.mark.django_db

State = Delivery.State
HARD = "550 5.1.1 <{}>: Recipient address rejected: User unknown"
SOFT = "552 5.2.2 <{}>: Mailbox full"
BLOCK = "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
RATE = "450 4.7.1 Too many messages, rate limited; try again later"
TEMPORARY = "451 4.3.0 Temporary local problem, try again later"


def _refusing(sink, answers: dict[str, str]) -> None:  # noqa: F811
    for address, reply in answers.items():
        sink.answers[address] = [reply.format(address)]


def test_refusals_in_the_session_are_recorded_as_feedback_in_one_insert(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
):
    campaign = campaign_factory(14)
    hard, soft, block, rate, temporary = (f"reader{i}@mail{i}.test" for i in range(5))
    _refusing(sink, {hard: HARD, soft: SOFT, block: BLOCK, rate: RATE, temporary: TEMPORARY})
    campaigns_start_due()
    with CaptureQueriesContext(connection) as queries:
        chunk_send(campaign_id=campaign.pk, limit=50)
    inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "sending_feedbackevent"')]
    assert len(inserts) == 1

    events = {e.address: e for e in FeedbackEvent.objects.filter(source="smtp")}
    assert set(events) == {hard, soft, block, rate}  # a plain temporary failure is not one
    assert [(events[a].kind, events[a].bounce_class) for a in (hard, soft, block, rate)] == [
        ("bounce", "hard"),
        ("bounce", "soft"),
        ("bounce", "block"),
        ("deferral", "block"),
    ]
    assert events[hard].status == "5.1.1"
    assert events[hard].diagnostic.startswith("550 5.1.1")
    assert events[hard].rule == "mailbox unknown"
    assert events[block].remote_mta
    assert {e.sending_domain for e in events.values()} == {DOMAIN}
    assert {e.workspace_id for e in events.values()} == {campaign.workspace_id}
    assert Delivery.objects.get(campaign=campaign, address=rate).state == State.DEFERRED

    # The hard bounce suppresses once (the pipeline's hard path), the soft one not yet.
    assert list(
        Suppression.objects.filter(workspace=campaign.workspace).values_list("email", "reason")
    ) == [(hard, "hard_bounce")]
    assert Contact.objects.get(email=hard).status == Contact.Status.BOUNCED
    assert Contact.objects.get(email=soft).status == Contact.Status.ACTIVE


def test_blocks_in_the_session_count_per_domain_and_rates_count_each_delivery_once(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
):
    since = timezone.now() - dt.timedelta(minutes=1)
    campaign = campaign_factory(10)
    block, rate, soft = "reader0@mail0.test", "reader1@mail1.test", "reader2@mail2.test"
    _refusing(sink, {block: BLOCK, rate: RATE, soft: SOFT})
    campaigns_start_due()
    _drain(campaign)
    # The deferred row is tried again and refused for the same reason: still one delivery.
    Delivery.objects.filter(campaign=campaign, state=State.DEFERRED).update(
        next_attempt_at=timezone.now()
    )
    _drain(campaign)
    assert FeedbackEvent.objects.filter(source="smtp", address=rate).count() == 2

    assert feedback_block_counts(since=since) == {DOMAIN: 2}
    rates = feedback_rates(workspace=campaign.workspace, since=since)
    # 8 accepted + 2 refused in the session; the deferred one has not been handed over.
    assert rates.sent == 9
    assert rates.bounces == {"hard": 0, "soft": 1, "block": 1, "unknown": 0}


def test_soft_bounces_in_the_session_reach_the_soft_bounce_limit(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    settings,
):
    settings.FEEDBACK_SOFT_BOUNCE_LIMIT, settings.FEEDBACK_SOFT_BOUNCE_DAYS = 2, 30
    soft, once = "reader0@mail0.test", "reader1@mail1.test"
    first = campaign_factory(3)
    _refusing(sink, {soft: SOFT, once: SOFT})
    campaigns_start_due()
    _drain(first)
    assert not Suppression.objects.filter(workspace=first.workspace).exists()

    # A second campaign of the same workspace to the same address, refused again.
    second = first.__class__.objects.create(
        workspace=first.workspace,
        name="Summer",
        subject="Hi",
        from_name="Shop",
        from_email=first.from_email,
        html=first.html,
        status=first.Status.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    second.include_lists.set(first.include_lists.all())
    sink.answers[once] = ["250 OK"]
    campaigns_start_due()
    _drain(second)

    [suppression] = Suppression.objects.filter(workspace=first.workspace)
    assert (suppression.email, suppression.reason) == (soft, "soft_bounces")
    assert "2 soft bounces" in suppression.source
