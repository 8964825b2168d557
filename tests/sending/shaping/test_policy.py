"""Workspace sending policies: hourly and daily quotas (a campaign past them waits, it
does not fail), campaign approval, the policy a new workspace starts with, the
reputation summary, and automatic suspension when recipients complain too much."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry, Role
from accounts.services import workspace_create
from campaigns.models import Campaign
from sending import pipeline, policy
from sending.models import Delivery, PlatformSwitch, SendingPolicy
from sending.pipeline import campaign_finish_if_done, campaigns_start_due, chunk_send
from sending.services.feedback import complaint_record
from sending.services.policy import (
    SUSPEND_MIN_SENT,
    campaign_approve,
    workspace_complaints_check,
    workspaces_complaints_check,
)
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.sending.test_pipeline import campaign_factory, sink  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

State = Delivery.State
UTC = dt.UTC


class Clocks:
    """The policy's clocks moved by hand: the caches' (seconds) and the quota windows'."""

    def __init__(self, wall: dt.datetime):
        self.ticks = 1000.0
        self.wall = wall

    def move_to(self, wall: dt.datetime) -> None:
        self.wall = wall
        self.ticks += 10  # and past any cached read


@pytest.fixture(autouse=True)
def only_policy_limits(monkeypatch):
    """This module's claim limit alone (the breaker's batches are tested on their own)."""
    monkeypatch.setattr(pipeline, "claim_limits", [policy.policy_claim_limit])


@pytest.fixture
def clocks(monkeypatch, settings):
    settings.SENDING_POLICY_CACHE_SECONDS = 2.0
    today = timezone.now().astimezone(UTC).date()
    found = Clocks(dt.datetime.combine(today, dt.time(10, 30), tzinfo=UTC))
    monkeypatch.setattr(policy, "clock", lambda: found.ticks)
    monkeypatch.setattr(policy, "wall_clock", lambda: found.wall)
    policy.policy_cache_clear()
    yield found
    policy.policy_cache_clear()


def _states(campaign: Campaign) -> dict[str, int]:
    rows = Delivery.objects.filter(campaign=campaign).values("state").annotate(n=Count("pk"))
    return {row["state"]: row["n"] for row in rows}


def _send_until_held(campaign: Campaign) -> int:
    """Chunks until the policy allows nothing more now; the number claimed."""
    claimed = 0
    while (report := chunk_send(campaign_id=campaign.pk, limit=40)) is not None:
        if report.throttled:
            return claimed
        claimed += report.claimed
    return claimed


def _sent_at(campaign: Campaign, at: dt.datetime, dated: list[dt.datetime]) -> None:
    """Date the messages just sent (stamped with the real time) into the test's clock."""
    Delivery.objects.filter(campaign=campaign, state=State.SENT).exclude(sent_at__in=dated).update(
        sent_at=at
    )
    dated.append(at)


# --- quotas ------------------------------------------------------------------------------------


def test_a_campaign_past_its_quotas_waits_and_goes_on_in_the_next_hour_and_day(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    clocks,
):
    campaign = campaign_factory(300)
    SendingPolicy.objects.create(
        workspace=campaign.workspace, daily_quota=250, hourly_quota=100, requires_approval=False
    )
    day = clocks.wall.replace(hour=0, minute=0)
    assert campaigns_start_due() == [campaign.pk]

    assert _send_until_held(campaign) == 100  # the hourly quota
    dated = []
    _sent_at(campaign, day.replace(hour=10, minute=5), dated)
    assert _states(campaign) == {State.SENT: 100, State.QUEUED: 200}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING  # waiting, not failed
    # The workspace's zone is Europe/Berlin: 11:00 UTC is 12:00 CET.
    assert policy.campaign_send_notice(campaign=campaign) == (
        f"Hourly quota reached: resumes at {day:%Y-%m-%d} 12:00 (CET)."
    )

    clocks.move_to(day.replace(hour=11, minute=5))
    assert _send_until_held(campaign) == 100
    _sent_at(campaign, day.replace(hour=11, minute=1), dated)

    clocks.move_to(day.replace(hour=12, minute=5))
    assert _send_until_held(campaign) == 50  # what is left of the daily 250
    _sent_at(campaign, day.replace(hour=12, minute=4), dated)
    assert _states(campaign) == {State.SENT: 250, State.QUEUED: 50}
    tomorrow = day + dt.timedelta(days=1)
    assert policy.campaign_send_notice(campaign=campaign) == (
        f"Daily quota reached: resumes at {tomorrow:%Y-%m-%d} 01:00 (CET)."
    )
    usage = policy.workspace_quota_usage(workspace_id=campaign.workspace_id)
    assert (usage.sent_today, usage.sent_this_hour, usage.remaining) == (250, 50, 0)
    assert usage.resumes_at == tomorrow

    clocks.move_to(tomorrow.replace(minute=5))
    assert _send_until_held(campaign) == 50
    assert campaign_finish_if_done(campaign_id=campaign.pk)
    assert len({rcpt for _, rcpt, _ in sink.received}) == len(sink.received) == 300


def test_quota_counts_rows_being_sent_and_survives_a_fresh_process(workspace, clocks):
    """The count comes from Delivery rows (nothing kept in memory or Redis), claimed and in
    flight rows included; a process's own grants count until its next read."""
    SendingPolicy.objects.create(workspace=workspace, daily_quota=0, hourly_quota=10)
    campaign = Campaign.objects.create(workspace=workspace, name="c", status="sending")
    Delivery.objects.bulk_create(
        [
            Delivery(workspace=workspace, campaign=campaign, address="a@x.test", state="sent",
                     sent_at=clocks.wall - dt.timedelta(minutes=10)),
            Delivery(workspace=workspace, campaign=campaign, address="b@x.test",
                     state="claimed", lease_token="00000000-0000-0000-0000-000000000001"),
            Delivery(workspace=workspace, campaign=campaign, address="c@x.test", state="sent",
                     sent_at=clocks.wall - dt.timedelta(hours=1)),  # the hour before
            Delivery(workspace=workspace, campaign=campaign, address="d@x.test",
                     state="bounced", bounce_class="hard"),  # refused in the session: not counted
        ]
    )  # fmt: skip
    assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=100) == 8
    assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=100) == 0
    policy.policy_cache_clear()  # a new worker process reads the same count
    assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=5) == 5


def test_a_workspace_without_a_policy_or_with_zero_quotas_is_not_limited(workspace, clocks):
    assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=10_000) == 10_000
    SendingPolicy.objects.create(workspace=workspace, daily_quota=0, hourly_quota=0)
    clocks.move_to(clocks.wall)
    assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=10_000) == 10_000
    assert policy.workspace_quota_usage(workspace_id=workspace.pk).remaining is None


# --- new workspaces and approval ----------------------------------------------------------------


def test_a_new_workspace_starts_with_low_quotas_and_approval(settings):
    settings.SENDING_NEW_WORKSPACE_DAILY_QUOTA = 300
    settings.SENDING_NEW_WORKSPACE_HOURLY_QUOTA = 60
    workspace = workspace_create(name="Fresh", owner=UserFactory())
    found = SendingPolicy.objects.get(workspace=workspace)
    assert (found.daily_quota, found.hourly_quota, found.requires_approval) == (300, 60, True)
    assert not SendingPolicy.objects.filter(workspace=WorkspaceFactory()).exists()


def test_campaigns_wait_for_approval_and_start_on_the_scan_after_it(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    member_client,
    operator_client,
):
    campaign = campaign_factory(20)
    SendingPolicy.objects.create(workspace=campaign.workspace, requires_approval=True)
    client = member_client(campaign.workspace, role=Role.EDITOR)

    assert campaigns_start_due() == []
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert list(policy.campaign_list_awaiting_approval()) == [campaign]
    kwargs = {"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk}
    panel_url = reverse("sending:campaign_progress", kwargs=kwargs)
    review = client.get(reverse("campaigns:campaign_review", kwargs=kwargs))
    assert panel_url in review.content.decode()  # a scheduled campaign loads the panel
    assert "Waiting for approval" in client.get(panel_url).content.decode()

    listing = operator_client.get("/admin/campaigns/campaign/?approval=awaiting")
    assert listing.status_code == 200
    assert campaign.name in listing.content.decode()
    response = operator_client.post(
        "/admin/campaigns/campaign/",
        {"action": "approve", "_selected_action": [campaign.pk]},
        follow=True,
    )
    assert "Approved 1 campaign(s)." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.approved_by == operator_client.user
    assert campaign.approved_at
    entry = AuditEntry.objects.get(verb="campaign.approved")
    assert (entry.workspace, entry.actor) == (campaign.workspace, operator_client.user)

    assert campaigns_start_due() == [campaign.pk]
    assert not policy.campaign_list_awaiting_approval().exists()


def test_without_the_approval_step_campaigns_start_at_once(campaign_factory):  # noqa: F811
    campaign = campaign_factory(5)
    SendingPolicy.objects.create(workspace=campaign.workspace, requires_approval=False)
    assert campaigns_start_due() == [campaign.pk]


def test_only_open_campaigns_can_be_approved(campaign_factory):  # noqa: F811
    campaign = campaign_factory(5)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)
    from accounts.errors import ApplicationError

    with pytest.raises(ApplicationError):
        campaign_approve(campaign=campaign, acting_user=None)


# --- reputation ----------------------------------------------------------------------------------


def _history(workspace, *, sent: int, complaints: int = 0, bounces: int = 0, days_ago: int = 1):
    """`sent` deliveries handed over `days_ago` days ago, the first ones complained about
    and the next ones bounced."""
    at = timezone.now() - dt.timedelta(days=days_ago)
    campaign = Campaign.objects.create(workspace=workspace, name=f"c{sent}", status="sent")
    Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=campaign,
            address=f"r{i}@x{days_ago}.test",
            state=State.BOUNCED if complaints <= i < complaints + bounces else State.SENT,
            bounce_class="hard" if complaints <= i < complaints + bounces else "",
            sent_at=at,
            bounced_at=at if complaints <= i < complaints + bounces else None,
            complained_at=at if i < complaints else None,
        )
        for i in range(sent)
    )
    return campaign


@pytest.mark.parametrize(
    ("complaints", "bounces", "level"),
    [(0, 0, "good"), (1, 0, "warning"), (3, 0, "bad"), (0, 20, "warning"), (0, 50, "bad")],
)
def test_reputation_compares_30_days_with_the_providers_lines(
    workspace, complaints, bounces, level
):
    _history(workspace, sent=1000, complaints=complaints, bounces=bounces, days_ago=3)
    _history(workspace, sent=500, complaints=100, days_ago=40)  # outside the window
    found = policy.workspace_reputation(workspace=workspace)
    assert found.sent == 1000
    assert found.complaint_percent == complaints / 10
    assert found.bounce_percent == bounces / 10
    assert found.level == level


def test_the_sending_overview_shows_reputation_and_quota(workspace, member_client):
    _history(workspace, sent=1000, complaints=2, days_ago=3)
    SendingPolicy.objects.create(workspace=workspace, daily_quota=500, hourly_quota=0)
    page = member_client(workspace).get(
        reverse("sending:overview", kwargs={"workspace_slug": workspace.slug})
    )
    html = page.content.decode()
    assert "At risk" in html
    assert "0.200%" in html
    assert "0 of 500 today" in html


# --- automatic suspension ----------------------------------------------------------------------


def test_complaints_over_the_limit_suspend_sending_and_email_the_owners(
    workspace, mailoutbox, django_capture_on_commit_callbacks
):
    owner = MembershipFactory(workspace=workspace, role=Role.OWNER).user
    MembershipFactory(workspace=workspace, role=Role.EDITOR)
    campaign = _history(workspace, sent=400)
    delivery = Delivery.objects.filter(campaign=campaign).first()
    with django_capture_on_commit_callbacks(execute=True):
        complaint_record(delivery=delivery, source="inbound")  # 1 of 400: 0.25%
    assert not SendingPolicy.objects.filter(workspace=workspace, is_sending_stopped=True).exists()

    second = Delivery.objects.filter(campaign=campaign).last()
    with django_capture_on_commit_callbacks(execute=True):
        complaint_record(delivery=second, source="inbound")  # 2 of 400: 0.5% ≥ 0.3%

    found = SendingPolicy.objects.get(workspace=workspace)
    assert found.is_sending_stopped
    assert found.stopped_reason.startswith("Spam complaints reached 0.50% of the 400 messages")
    entry = AuditEntry.objects.get(verb="workspace.sending_stopped")
    assert entry.actor is None
    assert entry.details["reason"] == found.stopped_reason
    assert [message.to for message in mailoutbox] == [[owner.email]]
    assert "suspended" in mailoutbox[0].subject
    assert found.stopped_reason in mailoutbox[0].body
    policy.policy_cache_clear()
    assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=10) == 0


def test_a_few_complaints_on_little_mail_do_not_suspend(workspace):
    campaign = _history(workspace, sent=SUSPEND_MIN_SENT - 1)
    for delivery in Delivery.objects.filter(campaign=campaign)[:5]:
        complaint_record(delivery=delivery, source="inbound")
    assert not SendingPolicy.objects.filter(workspace=workspace).exists()


def test_the_workspace_limit_replaces_the_platform_one(workspace):
    SendingPolicy.objects.create(
        workspace=workspace, complaint_limit_percent=Decimal("1.0"), requires_approval=False
    )
    campaign = _history(workspace, sent=200)
    deliveries = list(Delivery.objects.filter(campaign=campaign)[:2])
    for delivery in deliveries:  # 1.0%: reaches the limit at the second
        assert not SendingPolicy.objects.get(workspace=workspace).is_sending_stopped
        complaint_record(delivery=delivery, source="inbound")
    assert SendingPolicy.objects.get(workspace=workspace).is_sending_stopped


def test_the_periodic_check_suspends_workspaces_over_the_limit(workspace, settings):
    quiet = WorkspaceFactory()
    _history(quiet, sent=1000, complaints=1)
    campaign = _history(workspace, sent=200)
    settings.SENDING_COMPLAINT_SUSPEND_PERCENT = 50.0  # nothing suspends as they arrive
    for delivery in Delivery.objects.filter(campaign=campaign)[:2]:
        complaint_record(delivery=delivery, source="inbound")
    old = _history(WorkspaceFactory(), sent=200, complaints=50, days_ago=8)  # before the window
    assert old.workspace_id not in workspaces_complaints_check()

    settings.SENDING_COMPLAINT_SUSPEND_PERCENT = 0.3
    assert workspaces_complaints_check() == [workspace.pk]
    assert workspace_complaints_check(workspace=workspace) is False  # already stopped


# --- admin -------------------------------------------------------------------------------------


def test_operators_stop_and_allow_a_workspace_and_the_platform_in_the_admin(
    operator_client, workspace
):
    found = SendingPolicy.objects.create(workspace=workspace, requires_approval=True)
    for path in ("/admin/sending/sendingpolicy/?q=a", "/admin/sending/platformswitch/"):
        assert operator_client.get(path).status_code == 200
    page = operator_client.get(f"/admin/sending/sendingpolicy/{found.pk}/change/")
    assert page.status_code == 200
    assert "Reputation (30 days)" in page.content.decode()
    form = {
        "workspace": workspace.pk,
        "daily_quota": 5000,
        "hourly_quota": 1000,
        "complaint_limit_percent": "",
        "is_sending_stopped": "on",
        "stopped_reason": "Phishing reported",
    }
    response = operator_client.post(f"/admin/sending/sendingpolicy/{found.pk}/change/", form)
    assert response.status_code == 302
    found.refresh_from_db()
    assert found.is_sending_stopped
    assert found.stopped_reason == "Phishing reported"
    assert (found.daily_quota, found.requires_approval) == (5000, False)
    verbs = set(AuditEntry.objects.filter(workspace=workspace).values_list("verb", flat=True))
    assert {"workspace.sending_stopped", "workspace.sending_policy_changed"} <= verbs

    operator_client.post(
        "/admin/sending/sendingpolicy/",
        {"action": "allow_sending", "_selected_action": [found.pk]},
    )
    found.refresh_from_db()
    assert not found.is_sending_stopped

    response = operator_client.post(
        "/admin/sending/platformswitch/add/",
        {"is_sending_stopped": "on", "reason": "Upstream blocklisting"},
    )
    assert response.status_code == 302
    switch = PlatformSwitch.objects.get()
    assert switch.is_sending_stopped
    assert switch.reason == "Upstream blocklisting"
    assert AuditEntry.objects.filter(verb="platform.sending_stopped").exists()
    operator_client.post(f"/admin/sending/platformswitch/{switch.pk}/change/", {"reason": ""})
    switch.refresh_from_db()
    assert not switch.is_sending_stopped
    assert AuditEntry.objects.filter(verb="platform.sending_allowed").exists()
