"""Scheduling in the workspace's time zone: DST, past times, reschedule, unschedule, cancel."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from campaigns import scheduling
from campaigns.models import Campaign
from campaigns.scheduling import (
    campaign_cancel,
    campaign_list_due,
    campaign_schedule,
    campaign_unschedule,
    local_to_utc,
)
from tests.campaigns.test_checks import ready_campaign
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

BERLIN = "Europe/Berlin"


def _url(name: str, campaign: Campaign) -> str:
    return reverse(
        f"campaigns:{name}",
        kwargs={"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk},
    )


def _next_clock_change(zone: str, *, forward: bool) -> date:
    """The next day (from the day after tomorrow) on which the zone's clocks go forward/back."""
    tz = ZoneInfo(zone)
    day = timezone.now().date() + timedelta(days=2)
    for _ in range(400):
        before = datetime.combine(day, time(0), tz).utcoffset()
        after = datetime.combine(day + timedelta(days=1), time(0), tz).utcoffset()
        if before != after and (after > before) == forward:
            return day
        day += timedelta(days=1)
    raise AssertionError(f"{zone} has no clock change within a year")


# ---------------------------------------------------------------- local_to_utc


@pytest.mark.parametrize(
    ("zone", "before", "after", "utc_hours"),
    [
        (BERLIN, date(2025, 3, 29), date(2025, 3, 31), (8, 7)),  # summer time from 30 March
        (BERLIN, date(2025, 10, 25), date(2025, 10, 27), (7, 8)),  # winter time from 26 Oct
        ("America/New_York", date(2025, 3, 8), date(2025, 3, 10), (14, 13)),
    ],
)
def test_nine_oclock_maps_to_different_utc_hours_across_a_clock_change(
    zone, before, after, utc_hours
):
    nine = time(9, 0)
    first = local_to_utc(local=datetime.combine(before, nine), time_zone=zone)
    second = local_to_utc(local=datetime.combine(after, nine), time_zone=zone)
    assert (first.utc.hour, second.utc.hour) == utc_hours
    assert first.utc.tzinfo is UTC
    assert (first.local.hour, second.local.hour) == (9, 9)
    assert not first.is_ambiguous
    assert first.note == ""


def test_a_wall_time_the_clocks_skip_is_refused_naming_the_zone():
    with pytest.raises(ApplicationError) as caught:
        local_to_utc(local=datetime.combine(date(2025, 3, 30), time(2, 30)), time_zone=BERLIN)
    assert "2025-03-30 02:30 does not exist in Europe/Berlin" in caught.value.message


def test_an_ambiguous_wall_time_resolves_to_the_first_occurrence_and_says_so():
    wall = local_to_utc(local=datetime.combine(date(2025, 10, 26), time(2, 30)), time_zone=BERLIN)
    assert wall.utc == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET
    assert wall.is_ambiguous
    assert "happens twice" in wall.note
    assert "first time (CEST, UTC+02:00)" in wall.note


def test_an_unknown_time_zone_is_a_clear_error():
    with pytest.raises(ApplicationError, match="Unknown time zone"):
        local_to_utc(local=datetime.combine(date(2025, 1, 1), time(9)), time_zone="Mars/Olympus")


# ---------------------------------------------------------------- the services


def test_schedule_sets_the_time_and_audits(workspace, user):
    campaign = ready_campaign(workspace)
    send_at = timezone.now() + timedelta(days=3)
    campaign_schedule(campaign=campaign, send_at=send_at, acting_user=user)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.scheduled_at == send_at
    entry = AuditEntry.objects.get(verb="campaign.scheduled", target_id=str(campaign.pk))
    assert entry.actor == user
    assert entry.details["scheduled_at"] == send_at.isoformat()


def test_send_now_makes_the_campaign_due_at_once(workspace):
    campaign = ready_campaign(workspace)
    before = timezone.now()
    campaign_schedule(campaign=campaign, send_at=None, acting_user=None)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert before <= campaign.scheduled_at <= timezone.now()
    assert list(campaign_list_due(now=timezone.now())) == [campaign]


def test_a_past_time_is_refused(workspace):
    campaign = ready_campaign(workspace)
    with pytest.raises(ApplicationError, match="already passed"):
        campaign_schedule(
            campaign=campaign, send_at=timezone.now() - timedelta(minutes=5), acting_user=None
        )
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_a_time_picked_seconds_ago_is_accepted(workspace):
    campaign = ready_campaign(workspace)
    campaign_schedule(
        campaign=campaign, send_at=timezone.now() - timedelta(seconds=20), acting_user=None
    )
    assert campaign.status == Campaign.Status.SCHEDULED


def test_more_than_a_year_ahead_is_refused(workspace):
    campaign = ready_campaign(workspace)
    with pytest.raises(ApplicationError, match="at most a year ahead"):
        campaign_schedule(
            campaign=campaign, send_at=timezone.now() + timedelta(days=370), acting_user=None
        )


def test_a_naive_time_is_refused(workspace):
    campaign = ready_campaign(workspace)
    with pytest.raises(ApplicationError, match="time zone"):
        campaign_schedule(
            campaign=campaign,
            send_at=timezone.now().replace(tzinfo=None) + timedelta(days=1),
            acting_user=None,
        )


def test_scheduling_is_blocked_while_a_check_fails(workspace):
    campaign = ready_campaign(workspace, from_email="news@unverified.example")
    campaign.include_lists.clear()
    with pytest.raises(ApplicationError) as caught:
        campaign_schedule(
            campaign=campaign, send_at=timezone.now() + timedelta(days=1), acting_user=None
        )
    assert caught.value.message.startswith("Fix these before sending:")
    assert "From address: news@unverified.example is not on a verified" in caught.value.message
    assert "Audience: No one to send to" in caught.value.message
    assert len(caught.value.extra["problems"]) == 2
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at) == (Campaign.Status.DRAFT, None)
    assert not AuditEntry.objects.filter(verb="campaign.scheduled").exists()


def test_warnings_do_not_block_scheduling(workspace):
    campaign = ready_campaign(workspace, preheader="")
    campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(hours=1), acting_user=None
    )
    assert campaign.status == Campaign.Status.SCHEDULED


def test_reschedule_moves_the_time_and_is_audited_as_such(workspace):
    campaign = ready_campaign(workspace)
    first = timezone.now() + timedelta(days=1)
    second = timezone.now() + timedelta(days=2)
    campaign_schedule(campaign=campaign, send_at=first, acting_user=None)
    campaign_schedule(campaign=campaign, send_at=second, acting_user=None)
    campaign.refresh_from_db()
    assert campaign.scheduled_at == second
    entry = AuditEntry.objects.get(verb="campaign.rescheduled")
    assert entry.details["previous_scheduled_at"] == first.isoformat()


def test_unschedule_returns_a_draft(workspace, user):
    campaign = ready_campaign(workspace)
    campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(days=1), acting_user=None
    )
    campaign_unschedule(campaign=campaign, acting_user=user)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at) == (Campaign.Status.DRAFT, None)
    assert campaign.is_editable
    assert AuditEntry.objects.filter(verb="campaign.unscheduled", actor=user).exists()
    with pytest.raises(ApplicationError, match="draft: it cannot be unscheduled"):
        campaign_unschedule(campaign=campaign, acting_user=user)


@pytest.mark.parametrize("scheduled", [True, False])
def test_cancel_a_scheduled_campaign_or_a_draft(workspace, scheduled):
    campaign = ready_campaign(workspace)
    if scheduled:
        campaign_schedule(
            campaign=campaign, send_at=timezone.now() + timedelta(days=1), acting_user=None
        )
    campaign_cancel(campaign=campaign, acting_user=None)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at) == (Campaign.Status.CANCELLED, None)
    assert AuditEntry.objects.filter(verb="campaign.cancelled").exists()
    with pytest.raises(ApplicationError, match="cancelled: it cannot be scheduled"):
        campaign_schedule(campaign=campaign, send_at=None, acting_user=None)


@pytest.mark.parametrize("status", [Campaign.Status.SENDING, Campaign.Status.PAUSED])
def test_a_sending_or_paused_campaign_is_not_cancelled_here(workspace, status):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    for action in (campaign_cancel, campaign_unschedule):
        with pytest.raises(ApplicationError, match="Stop it from its sending controls"):
            action(campaign=campaign, acting_user=None)
    campaign.refresh_from_db()
    assert campaign.status == status


def test_the_service_reads_the_state_under_the_lock_not_a_stale_instance(workspace):
    campaign = ready_campaign(workspace)
    stale = Campaign.objects.get(pk=campaign.pk)
    campaign_cancel(campaign=campaign, acting_user=None)
    with pytest.raises(ApplicationError, match="cancelled"):
        campaign_schedule(campaign=stale, send_at=None, acting_user=None)


def test_due_campaigns_are_scheduled_ones_whose_time_has_come(workspace):
    now = timezone.now()
    due = ready_campaign(workspace)
    later = ready_campaign(workspace)
    draft = ready_campaign(workspace)
    campaign_schedule(campaign=due, send_at=now + timedelta(minutes=5), acting_user=None)
    campaign_schedule(campaign=later, send_at=now + timedelta(hours=5), acting_user=None)
    other = Campaign.objects.create(
        workspace=WorkspaceFactory(),
        name="Elsewhere",
        status=Campaign.Status.SCHEDULED,
        scheduled_at=now,
    )
    assert list(campaign_list_due(now=now + timedelta(minutes=10))) == [other, due]
    assert draft not in campaign_list_due(now=now + timedelta(days=1))
    assert scheduling.campaign_list_due(now=now - timedelta(minutes=1)).count() == 0


# ---------------------------------------------------------------- the views


def _schedule_post(client, campaign, day: date, at: str = "09:00"):
    return client.post(
        _url("campaign_schedule", campaign),
        {"when": "later", "date": day.isoformat(), "time": at},
        follow=True,
    )


def test_view_schedules_nine_oclock_local_on_both_sides_of_a_clock_change(workspace, member_client):
    assert workspace.time_zone == BERLIN
    client = member_client(workspace, Role.EDITOR)
    change = _next_clock_change(BERLIN, forward=True)
    hours = []
    for day in (change - timedelta(days=1), change + timedelta(days=1)):
        campaign = ready_campaign(workspace)
        response = _schedule_post(client, campaign, day)
        assert response.redirect_chain == [(_url("campaign_review", campaign), 302)]
        assert "(Europe/Berlin)" in response.content.decode()
        campaign.refresh_from_db()
        assert campaign.status == Campaign.Status.SCHEDULED
        local = campaign.scheduled_at.astimezone(ZoneInfo(BERLIN))
        assert (local.date(), local.hour, local.minute) == (day, 9, 0)
        hours.append(campaign.scheduled_at.astimezone(UTC).hour)
    assert hours == [8, 7]


def test_view_refuses_a_time_in_the_spring_forward_gap(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    day = _next_clock_change(BERLIN, forward=True)
    response = client.post(
        _url("campaign_schedule", campaign), {"when": "later", "date": day, "time": "02:30"}
    )
    assert response.status_code == 400
    assert f"{day.isoformat()} 02:30 does not exist in Europe/Berlin" in response.content.decode()
    assert f'value="{day.isoformat()}"' in response.content.decode()  # nothing typed is lost
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_view_confirms_an_ambiguous_time_as_its_first_occurrence(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    day = _next_clock_change(BERLIN, forward=False)
    response = _schedule_post(client, campaign, day, at="02:30")
    assert "happens twice" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.scheduled_at == datetime.combine(day, time(0, 30), tzinfo=UTC)


def test_view_requires_a_date_and_time_to_schedule(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("campaign_schedule", campaign), {"when": "later", "date": ""})
    assert response.status_code == 400
    assert b"Required to schedule." in response.content
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_view_refuses_a_past_time(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    yesterday = timezone.localdate(timezone=ZoneInfo(BERLIN)) - timedelta(days=1)
    response = client.post(
        _url("campaign_schedule", campaign), {"when": "later", "date": yesterday, "time": "09:00"}
    )
    assert response.status_code == 400
    assert b"That time has already passed" in response.content


def test_view_send_now(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("campaign_schedule", campaign), {"when": "now"}, follow=True)
    assert b"Sending starts in a moment." in response.content
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign in campaign_list_due(now=timezone.now())


def test_view_schedule_blocked_by_a_failing_check_shows_why(workspace, member_client):
    campaign = ready_campaign(workspace, subject="")
    client = member_client(workspace, Role.EDITOR)
    page = client.get(_url("campaign_review", campaign)).content.decode()
    assert "disabled" in page
    assert "Fix the 1 failing check in the checklist before sending." in page
    response = client.post(_url("campaign_schedule", campaign), {"when": "now"})
    assert response.status_code == 400
    assert "Subject: Add a subject." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_view_unschedule_and_cancel(workspace, member_client):
    campaign = ready_campaign(workspace)
    campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(days=1), acting_user=None
    )
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("campaign_unschedule", campaign), follow=True)
    assert b"Unscheduled: the campaign is a draft again." in response.content
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT

    response = client.post(_url("campaign_unschedule", campaign), follow=True)
    assert b"it cannot be unscheduled" in response.content

    response = client.post(_url("campaign_cancel", campaign), follow=True)
    assert response.redirect_chain == [(_url("campaign_review", campaign), 302)]
    assert b"Campaign cancelled" in response.content
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED


def test_actions_are_post_only(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    for name in ("campaign_schedule", "campaign_unschedule", "campaign_cancel"):
        assert client.get(_url(name, campaign)).status_code == 405


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("campaign_schedule", {"when": "now"}),
        ("campaign_unschedule", {}),
        ("campaign_cancel", {}),
    ],
)
def test_viewer_cannot_change_the_schedule(workspace, member_client, name, data):
    campaign = ready_campaign(workspace)
    send_at = timezone.now() + timedelta(days=1)
    campaign_schedule(campaign=campaign, send_at=send_at, acting_user=None)
    client = member_client(workspace, Role.VIEWER)
    assert client.post(_url(name, campaign), data).status_code == 403
    campaign.refresh_from_db()
    assert (campaign.status, campaign.scheduled_at) == (Campaign.Status.SCHEDULED, send_at)


# ---------------------------------------------------------------- the review page


def test_review_page_shows_each_check_and_links_each_fail_to_its_tab(workspace, member_client):
    campaign = ready_campaign(workspace, subject="", preheader="")
    campaign.include_lists.clear()
    client = member_client(workspace, Role.EDITOR)
    response = client.get(_url("campaign_review", campaign))
    page = response.content.decode()
    assert response.status_code == 200
    assert 'class="presend-check presend-fail" id="check-subject"' in page
    assert 'class="presend-check presend-fail" id="check-audience"' in page
    assert 'class="presend-check presend-warn" id="check-preheader"' in page
    assert 'class="presend-check presend-pass" id="check-footer"' in page
    assert f'href="{_url("campaign_edit", campaign)}">Fix in Content' in page
    assert f'href="{_url("campaign_audience", campaign)}">Fix in Audience' in page
    assert "2 to fix" in page
    assert "Matching contacts" in page
    assert 'name="addresses"' in page
    assert "Date (Europe/Berlin)" in page


def test_review_page_of_a_scheduled_campaign_shows_its_local_time_and_actions(
    workspace, member_client
):
    campaign = ready_campaign(workspace)
    campaign_schedule(
        campaign=campaign, send_at=timezone.now() + timedelta(days=2), acting_user=None
    )
    local = campaign.scheduled_at.astimezone(ZoneInfo(BERLIN))
    client = member_client(workspace, Role.EDITOR)
    page = client.get(_url("campaign_review", campaign)).content.decode()
    assert f"{local:%H:%M} CE" in page  # CET or CEST, the workspace's zone
    assert "(Europe/Berlin)" in page
    for action in ("Reschedule", "Unschedule", "Cancel campaign"):
        assert action in page
    assert f'value="{local:%H:%M}"' in page  # the form holds the current time to move it


def test_viewer_sees_the_checklist_without_forms(workspace, member_client):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.VIEWER)
    response = client.get(_url("campaign_review", campaign))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Pre-send checklist" in page
    assert "Ready to send" in page
    assert "<form" not in page.split('id="main"')[1]
    assert "Editors schedule and send campaigns." in page


def test_review_page_of_a_sent_campaign_has_nothing_to_check(workspace, member_client):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENT)
    response = member_client(workspace, Role.EDITOR).get(_url("campaign_review", campaign))
    assert response.status_code == 200
    assert b"This campaign is sent" in response.content
    assert b"Schedule</button>" not in response.content


def test_review_of_another_workspaces_campaign_is_404(workspace, member_client):
    campaign = ready_campaign(workspace)
    outsider = member_client(WorkspaceFactory(), Role.OWNER)
    url = reverse(
        "campaigns:campaign_review",
        kwargs={"workspace_slug": outsider.membership.workspace.slug, "campaign_id": campaign.pk},
    )
    assert outsider.get(url).status_code == 404
    assert outsider.post(url.replace("review", "cancel")).status_code == 404
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_review_page_of_a_message_that_does_not_compile_shows_the_error(workspace, member_client):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(html="<p>{% for x in y %}</p>")
    response = member_client(workspace, Role.EDITOR).get(_url("campaign_review", campaign))
    assert response.status_code == 200
    assert 'class="presend-check presend-fail" id="check-template"' in response.content.decode()
    assert "HTML body: Unknown tag" in response.content.decode()
