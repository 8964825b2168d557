"""The batch circuit breaker: campaigns go out in growing batches, each judged on its hard
bounces, complaints and deferrals before the next one may be claimed. Sends go through the
smtp transport to a real SMTP server on loopback (tests/sending/test_pipeline.py's sink,
which answers chosen addresses with chosen replies)."""

import threading

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry, Role
from campaigns.models import Campaign
from sending import breaker
from sending.breaker import (
    BatchRates,
    Thresholds,
    breaker_batch_limit,
    breaker_claim_limit,
    breaker_first_batch,
    breaker_thresholds,
    breaker_verdict,
)
from sending.models import CampaignSend, Delivery
from sending.pipeline import (
    campaign_finish_if_done,
    campaign_resume,
    campaigns_start_due,
    chunk_send,
)
from tests.factories import MembershipFactory, WorkspaceFactory
from tests.sending.test_pipeline import campaign_factory, sink  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

State = Delivery.State
HARD = "550 5.1.1 <nobody>: Recipient address rejected: User unknown"
PLATFORM = Thresholds(hard_bounce_percent=5.0, complaint_percent=0.1, deferral_percent=30.0)


@pytest.fixture(autouse=True)
def _breaker_settings(settings):
    settings.BREAKER_FIRST_BATCH = 100
    settings.BREAKER_GROWTH = 4.0
    settings.BREAKER_MIN_SAMPLE = 100
    settings.BREAKER_HARD_BOUNCE_PERCENT = 5.0
    settings.BREAKER_COMPLAINT_PERCENT = 0.1
    settings.BREAKER_DEFERRAL_PERCENT = 30.0
    settings.SENDING_FANOUT = 1  # one chain: each check may take the whole headroom


def _address(i: int) -> str:
    return f"reader{i}@mail{i % 7}.test"  # campaign_factory's contacts, in id order


def _send_all(campaign: Campaign, limit: int = 40) -> list[int]:
    """Chunks until nothing is claimable: what each chunk claimed (0: held back)."""
    claimed = []
    for _ in range(200):
        report = chunk_send(campaign_id=campaign.pk, limit=limit)
        if report is None:
            return claimed
        claimed.append(report.claimed)
    raise AssertionError("the campaign never stopped claiming")


def _counts(campaign: Campaign) -> dict[str, int]:
    rows = Delivery.objects.filter(campaign=campaign).values_list("state", flat=True)
    counts: dict[str, int] = {}
    for state in rows:
        counts[state] = counts.get(state, 0) + 1
    return counts


# --- arithmetic -------------------------------------------------------------------------------


def test_first_batch_is_a_tenth_of_the_campaign_within_the_sample_and_the_platform_cap(
    settings,
):
    settings.BREAKER_FIRST_BATCH = 500
    assert breaker_first_batch(total=40) == 100  # one batch: a small campaign never waits
    assert breaker_first_batch(total=100) == 100
    assert breaker_first_batch(total=1_000) == 100
    assert breaker_first_batch(total=3_000) == 300
    assert breaker_first_batch(total=1_000_000) == 500


def test_batches_grow_by_the_growth_factor_and_stop_at_the_campaign(settings):
    settings.BREAKER_FIRST_BATCH = 500
    limits = [breaker_batch_limit(batch_number=n, total=1_000_000) for n in range(1, 8)]
    assert limits == [500, 2_500, 10_500, 42_500, 170_500, 682_500, 2_730_500]
    assert breaker_batch_limit(batch_number=0, total=1_000_000) == 0
    # 100, 400, then 1,600 covers the 600: later batches add nothing
    assert breaker_batch_limit(batch_number=2, total=600) == 500
    assert breaker_batch_limit(batch_number=9, total=600) == 2_100


@pytest.mark.parametrize(
    ("rates", "crossed"),
    [
        (BatchRates(100, 5, 0, 0, 1, 1), []),
        (BatchRates(100, 6, 0, 0, 1, 1), ["6.0% hard bounces in batch 1 (limit 5%)"]),
        (BatchRates(3, 1, 0, 0, 1, 1), []),  # 1 bounce in 3 is too small a sample
        (BatchRates(99, 50, 0, 0, 1, 1), []),
        (BatchRates(1000, 0, 1, 0, 2, 2), []),  # 0.1% exactly
        (BatchRates(1000, 0, 2, 0, 2, 2), ["0.2% complaints in batch 2 (limit 0.1%)"]),
        (BatchRates(100, 0, 0, 30, 1, 1), []),
        (BatchRates(100, 0, 0, 31, 1, 3), ["31.0% deferrals in batches 1-3 (limit 30%)"]),
        (
            BatchRates(200, 20, 0, 80, 4, 4),
            [
                "10.0% hard bounces in batch 4 (limit 5%)",
                "40.0% deferrals in batch 4 (limit 30%)",
            ],
        ),
    ],
)
def test_verdict_trips_strictly_above_a_threshold_and_only_on_a_sample(rates, crossed):
    assert breaker_verdict(rates=rates, thresholds=PLATFORM) == crossed


def test_a_workspace_can_tighten_the_thresholds_but_not_loosen_them(monkeypatch):
    own = Thresholds(hard_bounce_percent=2.0, complaint_percent=1.0, deferral_percent=10.0)
    monkeypatch.setattr(breaker, "_workspace_thresholds", lambda workspace_id: own)
    assert breaker_thresholds(workspace_id=1) == Thresholds(2.0, 0.1, 10.0)


def test_concurrent_chains_share_what_is_left_of_a_batch(settings):
    settings.SENDING_FANOUT = 4
    assert breaker._share(20, 200) == 5
    assert breaker._share(2, 200) == 1
    assert breaker._share(4000, 200) == 200
    assert breaker._share(0, 200) == 0


def _bare_send(*, total: int, taken: int, limit: int) -> Campaign:
    workspace = WorkspaceFactory()
    campaign = Campaign.objects.create(
        workspace=workspace, name="Bare", status=Campaign.Status.SENDING
    )
    CampaignSend.objects.create(
        workspace=workspace,
        campaign=campaign,
        deliveries_total=total,
        batch_number=1,
        batch_limit=limit,
    )
    Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=campaign,
            address=f"r{i}@example.net",
            state=State.SENT if i < taken else State.QUEUED,
        )
        for i in range(total)
    )
    return campaign


@pytest.mark.parametrize(
    ("limit", "enough", "expected"),
    [
        (100, 20, 0),  # counted on the taken side: the batch is used up
        (250, 1000, 50),  # taken side
        (250, 20, 20),  # queued side, and no more than enough
        (280, 100, 80),  # queued side
    ],
)
def test_headroom_counts_either_side_of_the_index_to_the_same_answer(limit, enough, expected):
    campaign = _bare_send(total=300, taken=200, limit=limit)
    headroom = breaker._headroom(campaign_id=campaign.pk, limit=limit, total=300, enough=enough)
    assert headroom == expected


# --- campaigns through the pipeline -----------------------------------------------------------


def _start_with_bounces(campaign_factory, sink, *, count: int, bounced: list[int]) -> Campaign:  # noqa: F811
    campaign = campaign_factory(count)
    for i in bounced:
        sink.answers[_address(i)] = [HARD]
    campaigns_start_due()
    return campaign


def test_a_tenth_of_the_first_batch_hard_bouncing_pauses_before_the_second_batch(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    member_client,
    operator_client,
    django_capture_on_commit_callbacks,
):
    # 400 recipients: the first batch is 100 (a tenth is 40, below the sample of 100).
    campaign = _start_with_bounces(campaign_factory, sink, count=400, bounced=range(0, 100, 10))
    owners = [MembershipFactory(workspace=campaign.workspace, role=Role.OWNER) for _ in "ab"]
    MembershipFactory(workspace=campaign.workspace, role=Role.EDITOR)
    mail.outbox = []

    with django_capture_on_commit_callbacks(execute=True):
        _send_all(campaign)

    campaign.refresh_from_db()
    send = CampaignSend.objects.get(campaign=campaign)
    reason = "Paused by the circuit breaker: 10.0% hard bounces in batch 1 (limit 5%)"
    assert campaign.status == Campaign.Status.PAUSED
    assert (send.paused_by_breaker, send.pause_reason, send.batch_number) == (True, reason, 1)
    # Nothing of the second batch was claimed: the rest waits in the queue.
    assert _counts(campaign) == {State.SENT: 90, State.BOUNCED: 10, State.QUEUED: 300}
    assert len(sink.received) == 90
    assert AuditEntry.objects.filter(
        verb="campaign.paused", details__by_breaker=True, details__reason=reason
    ).exists()

    assert sorted(message.to[0] for message in mail.outbox) == sorted(
        owner.user.email for owner in owners
    )
    assert all(reason in message.body for message in mail.outbox)
    assert all("Spring" in message.subject for message in mail.outbox)

    viewer = member_client(campaign.workspace, role=Role.VIEWER)
    panel = viewer.get(
        reverse(
            "sending:campaign_progress",
            kwargs={"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk},
        )
    ).content.decode()
    assert reason in panel

    listed = operator_client.get("/admin/sending/campaignsend/?paused_by_breaker__exact=1")
    assert [row.pk for row in listed.context["cl"].result_list] == [send.pk]
    unlisted = operator_client.get("/admin/sending/campaignsend/?paused_by_breaker__exact=0")
    assert send.pk not in [row.pk for row in unlisted.context["cl"].result_list]

    # Further claims find a paused campaign: nothing more goes out.
    assert chunk_send(campaign_id=campaign.pk, limit=40) is None
    assert len(sink.received) == 90


def test_resume_opens_the_next_batch_without_judging_the_last_one_again(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
):
    # 600: batches of 100, then 400 (up to 500), then the rest.
    campaign = _start_with_bounces(campaign_factory, sink, count=600, bounced=range(0, 100, 10))
    _send_all(campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED

    campaign_resume(campaign=campaign, acting_user=None)
    send = CampaignSend.objects.get(campaign=campaign)
    assert (send.is_paused, send.paused_by_breaker, send.pause_reason) == (False, False, "")
    assert (send.batch_number, send.batch_limit) == (2, 500)

    claimed = _send_all(campaign, limit=200)
    # Batch 2 stops at 500, is judged clean at the next claim, and batch 3 takes the rest.
    assert claimed == [200, 200, 100]
    send.refresh_from_db()
    assert (send.batch_number, send.batch_limit) == (3, 2_100)
    assert campaign_finish_if_done(campaign_id=campaign.pk)
    assert _counts(campaign) == {State.SENT: 590, State.BOUNCED: 10}
    rcpts = [rcpt for _, rcpt, _ in sink.received]
    assert len(rcpts) == len(set(rcpts)) == 590
    assert AuditEntry.objects.filter(verb="campaign.paused").count() == 1


def test_a_clean_campaign_goes_through_every_batch_and_finishes(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    settings,
):
    settings.BREAKER_FIRST_BATCH, settings.BREAKER_MIN_SAMPLE = 20, 10
    campaign = campaign_factory(300)
    campaigns_start_due()

    claimed = _send_all(campaign, limit=200)

    # Batches of 20, 80 and then the rest: a claim stops at each batch's limit, and the
    # next claim judges the batch (nothing of it is in flight any more) and opens the next.
    assert claimed == [20, 80, 200]
    send = CampaignSend.objects.get(campaign=campaign)
    assert (send.batch_number, send.batch_limit, send.is_paused) == (3, 420, False)
    assert campaign_finish_if_done(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENT
    assert len(sink.received) == 300


@pytest.mark.parametrize(("bounces", "paused"), [(5, False), (6, True)])
def test_hard_bounces_at_the_threshold_do_not_trip_and_one_more_does(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    bounces,
    paused,
):
    campaign = _start_with_bounces(campaign_factory, sink, count=200, bounced=range(bounces))
    _send_all(campaign, limit=100)
    campaign.refresh_from_db()
    assert (campaign.status == Campaign.Status.PAUSED) is paused
    assert len(sink.received) == (100 - bounces if paused else 200 - bounces)


def test_deferrals_above_the_threshold_pause_the_campaign(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
):
    campaign = campaign_factory(200)
    for i in range(31):
        sink.answers[_address(i)] = ["451 4.7.1 Try again later"]
    campaigns_start_due()
    _send_all(campaign, limit=100)
    send = CampaignSend.objects.get(campaign=campaign)
    assert send.pause_reason == (
        "Paused by the circuit breaker: 31.0% deferrals in batch 1 (limit 30%)"
    )
    assert _counts(campaign)[State.QUEUED] == 100


def test_complaints_that_arrived_during_the_batch_pause_the_campaign(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
):
    campaign = campaign_factory(200)
    campaigns_start_due()
    assert chunk_send(campaign_id=campaign.pk, limit=100).claimed == 100
    # A feedback loop report for one of them comes in before the batch is judged.
    Delivery.objects.filter(campaign=campaign, address=_address(7)).update(
        complained_at=timezone.now()
    )
    assert chunk_send(campaign_id=campaign.pk, limit=100).throttled
    send = CampaignSend.objects.get(campaign=campaign)
    assert send.paused_by_breaker
    assert "1.0% complaints in batch 1 (limit 0.1%)" in send.pause_reason


def test_a_small_campaign_goes_out_in_one_batch_without_waiting(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    settings,
):
    settings.BREAKER_FIRST_BATCH = 500
    # 100 recipients, 10 of them bad: one batch, nothing held back, nothing left to protect.
    campaign = _start_with_bounces(campaign_factory, sink, count=100, bounced=range(0, 100, 10))
    assert _send_all(campaign, limit=200) == [100]
    send = CampaignSend.objects.get(campaign=campaign)
    assert (send.batch_number, send.batch_limit, send.is_paused) == (1, 100, False)
    assert campaign_finish_if_done(campaign_id=campaign.pk)


def test_a_manual_pause_and_resume_mid_batch_keeps_the_batch(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
):
    from sending.pipeline import campaign_pause

    campaign = campaign_factory(300)
    campaigns_start_due()
    assert chunk_send(campaign_id=campaign.pk, limit=60).claimed == 60
    campaign.refresh_from_db()
    campaign_pause(campaign=campaign, acting_user=None, reason="Checking the links")
    send = CampaignSend.objects.get(campaign=campaign)
    assert (send.pause_reason, send.paused_by_breaker) == ("Checking the links", False)
    campaign.refresh_from_db()
    campaign_resume(campaign=campaign, acting_user=None)
    send.refresh_from_db()
    assert (send.batch_number, send.batch_limit, send.pause_reason) == (1, 100, "")
    assert chunk_send(campaign_id=campaign.pk, limit=60).claimed == 40


def test_a_batch_is_judged_only_once_none_of_it_is_in_flight():
    import uuid

    campaign = _bare_send(total=400, taken=100, limit=100)
    last = Delivery.objects.filter(campaign=campaign, state=State.SENT).order_by("pk").last()
    Delivery.objects.filter(pk=last.pk).update(
        state=State.IN_FLIGHT, lease_token=uuid.uuid4(), lease_expires_at=timezone.now()
    )
    assert breaker_claim_limit(campaign.pk, 50) == 0
    send = CampaignSend.objects.get(campaign=campaign)
    assert (send.batch_number, send.batch_limit) == (1, 100)

    Delivery.objects.filter(pk=last.pk).update(
        state=State.SENT, lease_token=None, lease_expires_at=None
    )
    assert breaker_claim_limit(campaign.pk, 50) == 50
    send.refresh_from_db()
    assert (send.batch_number, send.batch_limit) == (2, 500)


def test_the_first_claim_check_sets_up_the_first_batch():
    campaign = _bare_send(total=400, taken=0, limit=100)
    CampaignSend.objects.filter(campaign=campaign).update(batch_limit=None)
    assert breaker_claim_limit(campaign.pk, 500) == 100
    send = CampaignSend.objects.get(campaign=campaign)
    assert (send.batch_number, send.batch_limit) == (1, 100)


# --- across workers -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bounced", [0, 10])
def test_concurrent_workers_judge_a_batch_once(bounced):
    """Workers on their own database connections reach the end of a batch together: one
    opens the next batch (or pauses and emails once)."""
    campaign = _bare_send(total=400, taken=100, limit=100)
    MembershipFactory(workspace=campaign.workspace, role=Role.OWNER)
    Delivery.objects.filter(
        campaign=campaign,
        state=State.SENT,
        pk__in=Delivery.objects.filter(campaign=campaign, state=State.SENT)
        .order_by("pk")
        .values("pk")[:bounced],
    ).update(state=State.BOUNCED, bounce_class="hard")
    mail.outbox = []
    workers = 6
    barrier = threading.Barrier(workers)
    allowed: list[int] = []

    def worker() -> None:
        try:
            barrier.wait()
            allowed.append(breaker_claim_limit(campaign.pk, 50))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    send = CampaignSend.objects.get(campaign=campaign)
    if bounced:
        assert (send.batch_number, send.is_paused, send.paused_by_breaker) == (1, True, True)
        assert allowed == [0] * workers
        assert AuditEntry.objects.filter(verb="campaign.paused").count() == 1
        assert len(mail.outbox) == 1
    else:
        assert (send.batch_number, send.batch_limit, send.is_paused) == (2, 500, False)
        assert allowed == [50] * workers  # the others take from the batch it opened
        assert AuditEntry.objects.filter(verb="campaign.paused").count() == 0
