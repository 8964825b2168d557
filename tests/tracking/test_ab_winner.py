"""The A/B winner step: after the wait, the variant with the best human rate wins, the held
audience is released with it, and the campaign finishes with the winner's subject.

A real send: the test share goes through the pipeline to an SMTP sink on loopback; opens
and clicks are seeded as the ingestion path leaves them (DeliveryActivity rows)."""

import datetime as dt
from email import message_from_bytes, policy

import pytest
from django.utils import timezone

from accounts.models import AuditEntry
from campaigns.models import AbTest, Campaign, Variant
from sending.models import CampaignSend, Delivery
from sending.pipeline import campaign_finish_if_done, campaign_pause, campaigns_start_due
from tests.sending.conftest import dns_server  # noqa: F401 (fixture)
from tests.sending.test_pipeline import _drain, campaign_factory, sink  # noqa: F401 (fixtures)
from tracking.ab import ab_winner_pick, ab_winners_due
from tracking.models import DeliveryActivity
from tracking.tasks import ab_winners_task

pytestmark = pytest.mark.django_db

State = Delivery.State
AUDIENCE = 50  # 20%: 10 test deliveries (5 per variant), 40 held
WAIT = dt.timedelta(minutes=60)


def ab_campaign_start(campaign_factory, *, metric: str = "opens") -> Campaign:  # noqa: F811
    campaign = campaign_factory(AUDIENCE)
    AbTest.objects.create(
        workspace=campaign.workspace,
        campaign=campaign,
        test_share_percent=20,
        metric=metric,
        wait_minutes=int(WAIT.total_seconds() // 60),
    )
    for label in "AB":
        Variant.objects.create(
            workspace=campaign.workspace, campaign=campaign, label=label, subject=f"Subject {label}"
        )
    assert campaigns_start_due() == [campaign.pk]
    return campaign


@pytest.fixture
def started(campaign_factory, sink):  # noqa: F811
    """A campaign whose test share has been sent; the rest holds."""
    campaign = ab_campaign_start(campaign_factory)
    _drain(campaign)
    assert len(sink.received) == 10
    return campaign


def variant(campaign: Campaign, label: str) -> Variant:
    return Variant.objects.get(campaign=campaign, label=label)


def sent_of(campaign: Campaign, label: str) -> list[Delivery]:
    """The test deliveries of a variant that went out."""
    return list(
        Delivery.objects.filter(campaign=campaign, variant__label=label, state=State.SENT).order_by(
            "pk"
        )
    )


def seed(deliveries, *, human_opens=0, opens=0, human_clicks=0, clicks=0) -> None:
    """Activity as the ingestion path leaves it: one row per delivery opened or clicked."""
    now = timezone.now()
    DeliveryActivity.objects.bulk_create(
        DeliveryActivity(
            workspace_id=delivery.workspace_id,
            delivery=delivery,
            campaign_id=delivery.campaign_id,
            variant_id=delivery.variant_id,
            opens=max(opens, human_opens),
            human_opens=human_opens,
            clicks=max(clicks, human_clicks),
            human_clicks=human_clicks,
            last_event_at=now,
        )
        for delivery in deliveries
    )


def after_wait(campaign: Campaign) -> dt.datetime:
    return CampaignSend.objects.get(campaign=campaign).started_at + WAIT


def holding(campaign: Campaign) -> int:
    return Delivery.objects.filter(campaign=campaign, state=State.HOLDING).count()


def test_nothing_is_decided_before_the_wait_is_over(started):
    ab_test = AbTest.objects.get(campaign=started)
    seed(sent_of(started, "B")[:2], human_opens=1)
    early = after_wait(started) - dt.timedelta(seconds=1)

    assert ab_winners_due(now=early) == []
    assert ab_winner_pick(ab_test=ab_test, now=early) is None

    ab_test.refresh_from_db()
    assert ab_test.winner is None
    assert holding(started) == 40
    assert not AuditEntry.objects.filter(verb="campaign.ab_winner_picked").exists()


def test_the_winner_waits_until_the_test_share_has_been_handed_over(campaign_factory, sink):  # noqa: F811
    campaign = ab_campaign_start(campaign_factory)  # test share still queued
    ab_test = AbTest.objects.get(campaign=campaign)
    late = after_wait(campaign) + dt.timedelta(hours=5)

    assert ab_winners_due(now=late) == []
    assert ab_winner_pick(ab_test=ab_test, now=late) is None

    _drain(campaign)
    assert ab_winners_due(now=late) == [ab_test.pk]


def test_the_better_human_open_rate_wins_however_many_machine_opens_the_other_has(
    started, django_capture_on_commit_callbacks
):
    ab_test = AbTest.objects.get(campaign=started)
    seed(sent_of(started, "A")[:1], human_opens=1)
    seed(sent_of(started, "A")[1:], opens=6)  # Apple's proxy and scanners
    seed(sent_of(started, "B")[:2], human_opens=1)
    now = after_wait(started)
    assert ab_winners_due(now=now) == [ab_test.pk]

    with django_capture_on_commit_callbacks() as callbacks:
        winner = ab_winner_pick(ab_test=ab_test, now=now)

    assert winner == variant(started, "B")
    ab_test.refresh_from_db()
    assert (ab_test.winner, ab_test.decided_at) == (winner, now)
    released = Delivery.objects.filter(campaign=started, variant__isnull=True)
    assert not released.exists()
    assert holding(started) == 0
    queued = Delivery.objects.filter(campaign=started, state=State.QUEUED)
    assert queued.count() == 40
    assert set(queued.values_list("variant", flat=True)) == {winner.pk}
    # The test share keeps its own variants.
    assert len(sent_of(started, "A")) == 5
    assert callbacks, "workers are set going after the commit"
    entry = AuditEntry.objects.get(verb="campaign.ab_winner_picked")
    assert (entry.workspace, entry.target_id) == (started.workspace, str(started.pk))
    assert entry.details["winner"] == "B"
    assert entry.details["released"] == 40
    assert entry.details["results"]["A"] == {"delivered": 5, "unique": 1, "rate": 0.2}
    assert entry.details["results"]["B"] == {"delivered": 5, "unique": 2, "rate": 0.4}
    assert "note" not in entry.details


def test_a_second_pick_changes_nothing(started):
    ab_test = AbTest.objects.get(campaign=started)
    seed(sent_of(started, "A")[:1], human_opens=1)
    now = after_wait(started)
    assert ab_winner_pick(ab_test=ab_test, now=now) == variant(started, "A")
    # B now leads, but the decision is made.
    seed(sent_of(started, "B"), human_opens=1)

    assert ab_winner_pick(ab_test=ab_test, now=now + dt.timedelta(hours=1)) is None
    assert ab_winners_due(now=now + dt.timedelta(hours=1)) == []
    ab_test.refresh_from_db()
    assert (ab_test.winner, ab_test.decided_at) == (variant(started, "A"), now)
    assert AuditEntry.objects.filter(verb="campaign.ab_winner_picked").count() == 1


def test_the_clicks_metric_counts_human_clicks_only(campaign_factory, sink):  # noqa: F811
    campaign = ab_campaign_start(campaign_factory, metric="clicks")
    _drain(campaign)
    seed(sent_of(campaign, "A"), human_opens=1, clicks=3)  # opened; links scanned
    seed(sent_of(campaign, "B")[:1], human_opens=1, human_clicks=1)
    ab_test = AbTest.objects.get(campaign=campaign)

    assert ab_winner_pick(ab_test=ab_test, now=after_wait(campaign)) == variant(campaign, "B")


def test_a_tie_goes_to_the_lower_label(started):
    seed(sent_of(started, "A")[:2], human_opens=1)
    seed(sent_of(started, "B")[:2], human_opens=1)
    seed(sent_of(started, "B")[2:], opens=1)
    ab_test = AbTest.objects.get(campaign=started)

    assert ab_winner_pick(ab_test=ab_test, now=after_wait(started)) == variant(started, "A")


def test_the_rate_is_per_delivered_message_so_bounces_do_not_count(started):
    seed(sent_of(started, "A")[:2], human_opens=1)
    b = sent_of(started, "B")
    seed(b[:2], human_opens=1)
    Delivery.objects.filter(pk=b[-1].pk).update(state=State.BOUNCED, bounce_class="hard")
    ab_test = AbTest.objects.get(campaign=started)

    assert ab_winner_pick(ab_test=ab_test, now=after_wait(started)) == variant(started, "B")
    entry = AuditEntry.objects.get(verb="campaign.ab_winner_picked")
    assert entry.details["results"]["B"] == {"delivered": 4, "unique": 2, "rate": 0.5}


def test_with_nothing_delivered_the_first_variant_is_sent_and_the_audit_says_so(started):
    Delivery.objects.filter(campaign=started, variant__isnull=False).update(
        state=State.BOUNCED, bounce_class="block"
    )
    ab_test = AbTest.objects.get(campaign=started)

    assert ab_winner_pick(ab_test=ab_test, now=after_wait(started)) == variant(started, "A")
    entry = AuditEntry.objects.get(verb="campaign.ab_winner_picked")
    assert entry.details["note"] == "No test message was delivered: the first variant was sent."
    assert holding(started) == 0


def test_a_paused_campaign_waits_for_its_resume(started):
    campaign_pause(campaign=started, acting_user=None)
    ab_test = AbTest.objects.get(campaign=started)

    assert ab_winners_due(now=after_wait(started)) == []
    assert ab_winner_pick(ab_test=ab_test, now=after_wait(started)) is None
    assert holding(started) == 40


def test_the_periodic_task_finishes_the_campaign_with_the_winners_subject(started, sink):  # noqa: F811
    seed(sent_of(started, "B")[:3], human_opens=2)
    test_share = {d.address for d in Delivery.objects.filter(campaign=started, state=State.SENT)}
    held = set(
        Delivery.objects.filter(campaign=started, state=State.HOLDING).values_list(
            "address", flat=True
        )
    )
    assert not campaign_finish_if_done(campaign_id=started.pk)  # the rest still holds
    assert ab_winners_task() == []  # the wait is not over
    CampaignSend.objects.filter(campaign=started).update(
        started_at=timezone.now() - WAIT - dt.timedelta(minutes=1)
    )

    assert ab_winners_task() == [AbTest.objects.get(campaign=started).pk]
    _drain(started)

    assert campaign_finish_if_done(campaign_id=started.pk)
    started.refresh_from_db()
    assert started.status == Campaign.Status.SENT
    rcpts = [rcpt for _, rcpt, _ in sink.received]
    assert len(rcpts) == len(set(rcpts)) == AUDIENCE
    subjects = {
        rcpt: message_from_bytes(raw, policy=policy.default)["Subject"]
        for _, rcpt, raw in sink.received
    }
    assert {subjects[address] for address in held} == {"Subject B"}
    assert {subjects[address] for address in test_share} == {"Subject A", "Subject B"}
