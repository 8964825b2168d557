"""The daily warm-up task: an IP past the end of its schedule becomes active."""

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import AuditEntry
from campaigns.models import Campaign
from espsite.celery import app
from sending.models import Delivery, IpPool, SendingIp, WarmupSchedule
from sending.tasks import warmup_graduate_task

pytestmark = pytest.mark.django_db


def _sent_on(campaign: Campaign, day: dt.date, n: int) -> None:
    at = dt.datetime.combine(day, dt.time(12), tzinfo=timezone.get_default_timezone())
    Delivery.objects.bulk_create(
        Delivery(
            workspace_id=campaign.workspace_id,
            campaign=campaign,
            address=f"r{day.day}-{i}@gmail.test",
            state=Delivery.State.SENT,
            provider="google",
            source_ip="127.0.0.2",
            sent_at=at,
            updated_at=at,
        )
        for i in range(n)
    )


def test_an_ip_past_the_end_of_its_schedule_becomes_active_when_the_task_runs(workspace):
    today = timezone.localdate()
    schedule = WarmupSchedule.objects.create(name="Two days", daily_caps=[2, 4])
    pool = IpPool.objects.create(name="Warm", warmup_schedule=schedule)
    past_end = SendingIp.objects.create(
        address="127.0.0.2", pool=pool, helo_hostname="mta2.test",
        state=SendingIp.State.WARMING, warmup_started_on=today - dt.timedelta(days=4),
    )  # fmt: skip
    still_warming = SendingIp.objects.create(
        address="127.0.0.3", pool=pool, helo_hostname="mta3.test",
        state=SendingIp.State.WARMING, warmup_started_on=today - dt.timedelta(days=1),
    )  # fmt: skip
    campaign = Campaign.objects.create(
        workspace=workspace, name="Launch", subject="Hi", html="<p>Hi</p>",
        from_email="news@shop.test", status=Campaign.Status.SENT,
    )  # fmt: skip
    for days_ago in (4, 3, 2):  # three healthy days: the two-day ramp is over
        _sent_on(campaign, today - dt.timedelta(days=days_ago), 2)

    assert "sending.tasks.warmup_graduate_task" in {
        entry["task"] for entry in app.conf.beat_schedule.values()
    }
    result = warmup_graduate_task.delay()

    assert result.get() == {"ips": 1, "domains": 0}
    past_end.refresh_from_db()
    still_warming.refresh_from_db()
    assert past_end.state == SendingIp.State.ACTIVE
    assert still_warming.state == SendingIp.State.WARMING
    assert AuditEntry.objects.filter(verb="sending_ip.warmed_up").count() == 1
