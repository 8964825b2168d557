"""Warm-up arithmetic: days, caps, the hold rule, stats read from deliveries, ETA,
graduation, engaged recipients first, and the admin's schedule validation."""

import datetime as dt
import itertools

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry
from campaigns.models import Campaign
from contacts.models import Contact
from sending import warmup
from sending.models import (
    Delivery,
    IpPool,
    ProviderLimit,
    RecipientDomain,
    SendingDomain,
    SendingIp,
    WarmupSchedule,
)
from sending.warmup import (
    DayStats,
    cap_today,
    caps_ahead,
    daily_cap,
    effective_warmup_day,
    engaged_first_annotation,
    engaged_first_sql,
    is_held,
    schedule_caps_validate,
    warmup_day,
    warmup_eta,
    warmup_graduate,
    warmup_stats,
    warmup_status,
)
from tests.factories import ContactFactory, WorkspaceFactory

UTC = dt.UTC
START = dt.date(2026, 3, 1)
CAPS = [50, 100, 500, 1000, 5000]
HEALTHY = DayStats(sent=50)


def day(n: int) -> dt.date:
    """Day n of a warm-up that started on START (day 1)."""
    return START + dt.timedelta(days=n - 1)


def at(n: int, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(hour), tzinfo=UTC)


@pytest.fixture(autouse=True)
def _thresholds(settings):
    settings.WARMUP_HOLD_DEFERRAL_PERCENT = 20.0
    settings.WARMUP_HOLD_BOUNCE_PERCENT = 5.0
    settings.WARMUP_HOLD_COMPLAINT_PERCENT = 0.1
    settings.WARMUP_ENGAGED_DAYS = 90


# --- pure arithmetic -------------------------------------------------------------------


def test_the_start_day_is_day_one():
    assert warmup_day(START, START) == 1
    assert warmup_day(START, day(3)) == 3
    assert warmup_day(START, START - dt.timedelta(days=2)) == 1  # not started yet: day 1
    assert warmup_day(None, START) == 1  # blank: starts with the first send


def test_the_daily_cap_follows_the_schedule_and_ends_with_it():
    assert [daily_cap(CAPS, n) for n in range(0, 8)] == [50, 50, 100, 500, 1000, 5000, None, None]


def test_healthy_sending_days_advance_the_ramp():
    stats = {day(1): HEALTHY, day(2): HEALTHY, day(3): HEALTHY}
    assert effective_warmup_day(started_on=START, today=day(4), daily_stats=stats) == 4
    assert effective_warmup_day(started_on=START, today=day(1), daily_stats=stats) == 1
    # Today's own sending does not count until tomorrow.
    assert effective_warmup_day(started_on=START, today=day(2), daily_stats=stats) == 2


def test_a_day_over_a_threshold_holds_the_ramp_and_a_healthy_day_resumes_it():
    stats = {
        day(1): HEALTHY,
        day(2): HEALTHY,
        day(3): DayStats(sent=450, bounced=50),  # 10% bounces
        day(4): HEALTHY,
    }
    caps = {
        n: daily_cap(CAPS, effective_warmup_day(started_on=START, today=day(n), daily_stats=stats))
        for n in range(1, 6)
    }
    # Day 3's bounces hold day 4 at day 3's cap; day 4 was healthy, so day 5 advances.
    assert caps == {1: 50, 2: 100, 3: 500, 4: 500, 5: 1000}
    assert is_held(today=day(4), daily_stats=stats) == ["bounce"]
    assert is_held(today=day(5), daily_stats=stats) == []


def test_days_without_sending_do_not_advance_the_ramp():
    stats = {day(1): HEALTHY, day(5): HEALTHY}  # a pause of three days in between
    assert effective_warmup_day(started_on=START, today=day(6), daily_stats=stats) == 3
    assert effective_warmup_day(started_on=START, today=day(6), daily_stats={}) == 1


def test_stats_before_the_start_do_not_count():
    stats = {START - dt.timedelta(days=1): HEALTHY, day(1): HEALTHY}
    assert effective_warmup_day(started_on=START, today=day(2), daily_stats=stats) == 2


@pytest.mark.parametrize(
    ("stats", "crossed"),
    [
        (DayStats(sent=80, deferred=20), []),  # 20% exactly: not over
        (DayStats(sent=75, deferred=25), ["deferral"]),
        (DayStats(sent=95, bounced=5), []),
        (DayStats(sent=94, bounced=6), ["bounce"]),
        (DayStats(sent=2000, complained=2), []),  # 0.1%
        (DayStats(sent=500, complained=1), ["complaint"]),  # 0.2%
        (
            DayStats(sent=60, deferred=30, bounced=10, complained=1),
            ["deferral", "bounce", "complaint"],
        ),
        (DayStats(complained=3), []),  # complaints about older mail on a day without sending
    ],
)
def test_each_rate_is_checked_against_its_threshold(stats, crossed):
    assert stats.crossed() == crossed
    assert stats.advances == (stats.attempted > 0 and not crossed)


def test_thresholds_come_from_settings(settings):
    settings.WARMUP_HOLD_BOUNCE_PERCENT = 20.0
    assert DayStats(sent=90, bounced=10).crossed() == []


def test_the_eta_is_the_day_the_remaining_messages_fit():
    ahead = list(itertools.islice(caps_ahead(CAPS, 1), 7))
    assert ahead == [50, 100, 500, 1000, 5000, None]
    today = day(1)
    # 30 left today, then 100 and 500: 300 fit by day 3.
    assert warmup_eta(remaining=300, today=today, caps=caps_ahead(CAPS, 1), sent_today=20) == day(3)
    assert warmup_eta(remaining=30, today=today, caps=caps_ahead(CAPS, 1), sent_today=20) == today
    assert warmup_eta(remaining=31, today=today, caps=caps_ahead(CAPS, 1), sent_today=20) == day(2)
    # Past the schedule there is no cap: everything goes that day.
    assert warmup_eta(remaining=10**9, today=today, caps=caps_ahead(CAPS, 4)) == day(3)
    assert warmup_eta(remaining=1, today=today, caps=itertools.repeat(0)) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "list of numbers"),
        ("50, 100", "list of numbers"),
        ({"1": 50}, "list of numbers"),
        ([50, -10], "Day 2's cap (-10) must be a positive number."),
        ([0, 10], "Day 1's cap (0) must be a positive number."),
        ([50, 100, 80], "Day 3's cap (80) is lower than day 2's (100): caps must not decrease."),
        ([50, 1.5], "Day 2's cap (1.5) is not a whole number."),
        ([True], "Day 1's cap (True) is not a whole number."),
        ([50, "100"], "Day 2's cap ('100') is not a whole number."),
    ],
)
def test_schedules_with_bad_caps_are_refused(value, message):
    with pytest.raises(ValidationError) as error:
        schedule_caps_validate(value)
    assert message in error.value.messages[0]


def test_a_flat_or_rising_schedule_is_accepted():
    assert schedule_caps_validate([50, 50, 100]) == [50, 50, 100]


# --- on the database -------------------------------------------------------------------


@pytest.fixture
def pool(db):
    schedule = WarmupSchedule.objects.create(name="Short", daily_caps=[10, 20, 40])
    return IpPool.objects.create(name="Warm", warmup_schedule=schedule)


@pytest.fixture
def sending_ip(pool):
    return SendingIp.objects.create(
        address="127.0.0.2", pool=pool, helo_hostname="mta2.test", warmup_started_on=START
    )


@pytest.fixture
def campaign(workspace):
    return _campaign(workspace, "news@news.shop.test")


def _campaign(workspace, from_email):
    return Campaign.objects.create(
        workspace=workspace,
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        from_email=from_email,
        status=Campaign.Status.SENDING,
    )


_serial = itertools.count()


def _delivery(campaign, *, provider="google", source_ip="127.0.0.2", state="sent", **times):
    """A delivery in `state`; times: sent=, deferred=, bounced=, complained= (day numbers
    or datetimes)."""
    stamp = {k: at(v) if isinstance(v, int) else v for k, v in times.items()}
    updated_at = max(stamp.values())
    return Delivery.objects.create(
        workspace_id=campaign.workspace_id,
        campaign=campaign,
        address=f"r{next(_serial)}@{provider}.test",
        state=state,
        provider=provider,
        source_ip=source_ip,
        sent_at=stamp.get("sent"),
        bounced_at=stamp.get("bounced"),
        complained_at=stamp.get("complained"),
        updated_at=updated_at,
    )


def _send(campaign, n, **kwargs):
    for _ in range(n):
        _delivery(campaign, **kwargs)


@pytest.mark.django_db
def test_stats_count_each_day_of_one_ip_and_provider_in_one_query(
    campaign, sending_ip, django_assert_num_queries
):
    _send(campaign, 3, sent=1)
    _delivery(campaign, sent=1, bounced=2, state="bounced")  # an asynchronous bounce
    _delivery(campaign, state="bounced", bounced=2)  # refused at RCPT
    _delivery(campaign, state="deferred", deferred=2)
    _delivery(campaign, sent=2, complained=3)
    _delivery(campaign, sent=dt.datetime.combine(day(3), dt.time(23, 59, 59), tzinfo=UTC))
    _delivery(campaign, sent=1, provider="yahoo")  # another provider
    _delivery(campaign, sent=1, source_ip="127.0.0.3")  # another IP
    _delivery(campaign, sent=-5)  # before the window

    with django_assert_num_queries(1):
        stats = warmup_stats(source_ip="127.0.0.2", provider="google", days=3, today=day(3))

    assert stats == {
        day(1): DayStats(sent=4),
        day(2): DayStats(sent=1, deferred=1, bounced=2),
        day(3): DayStats(sent=1, complained=1),
    }
    every = warmup_stats(source_ip="127.0.0.2", provider=None, days=3, today=day(3))
    assert every["yahoo"] == {day(1): DayStats(sent=1)}
    assert every["google"] == stats


@pytest.mark.django_db
def test_a_domain_s_stats_are_those_of_campaigns_from_it_and_its_subdomains(workspace):
    domain = SendingDomain.objects.create(workspace=workspace, domain="shop.test")
    _send(_campaign(workspace, "news@shop.test"), 2, sent=1, source_ip=None)
    _send(_campaign(workspace, "News@Mail.SHOP.test"), 1, sent=1, source_ip="127.0.0.9")
    _send(_campaign(workspace, "news@othershop.test"), 5, sent=1)
    _send(_campaign(WorkspaceFactory(), "news@shop.test"), 7, sent=1)  # not its workspace

    stats = warmup_stats(domain=domain, provider="google", days=1, today=day(1))

    assert stats == {day(1): DayStats(sent=3)}


@pytest.mark.django_db
def test_a_warming_ip_gets_its_pool_s_cap_for_the_day(campaign, sending_ip):
    _send(campaign, 10, sent=1)
    _send(campaign, 20, sent=2)

    assert cap_today(ip_or_domain_state=sending_ip, provider="google", today=day(3)) == 40
    assert cap_today(ip_or_domain_state=sending_ip, provider="google", today=day(4)) == 40
    # Yahoo has received nothing yet: its ramp is still on day 1.
    assert cap_today(ip_or_domain_state=sending_ip, provider="yahoo", today=day(3)) == 10
    # Stats given by the caller are used as they are (no query).
    stats = {day(1): HEALTHY, day(2): HEALTHY, day(3): HEALTHY}
    assert (
        cap_today(ip_or_domain_state=sending_ip, provider="google", today=day(4), stats=stats)
        is None
    )


@pytest.mark.django_db
def test_a_held_day_keeps_yesterday_s_cap(campaign, sending_ip):
    _send(campaign, 10, sent=1)
    _send(campaign, 18, sent=2)
    _send(campaign, 2, state="bounced", bounced=2)  # 10% bounced on day 2

    assert cap_today(ip_or_domain_state=sending_ip, provider="google", today=day(3)) == 20
    status = warmup_status(ip_or_domain=sending_ip, provider="google", remaining=25, today=day(3))
    assert status.held_for == ["bounce"]


@pytest.mark.django_db
def test_active_paused_and_warmed_up_states(campaign, sending_ip, workspace):
    sending_ip.state = SendingIp.State.ACTIVE
    assert cap_today(ip_or_domain_state=sending_ip, provider="google", today=day(2)) is None
    sending_ip.state = SendingIp.State.PAUSED
    assert cap_today(ip_or_domain_state=sending_ip, provider="google", today=day(2)) == 0

    domain = SendingDomain.objects.create(workspace=workspace, domain="shop.test")
    default_caps = WarmupSchedule.objects.get(is_default=True).daily_caps
    assert cap_today(ip_or_domain_state=domain, provider="google", today=day(1)) == default_caps[0]
    assert cap_today(ip_or_domain_state=domain, schedule=[7], provider="google", today=day(1)) == 7
    domain.is_warmed_up = True
    assert cap_today(ip_or_domain_state=domain, provider="google", today=day(1)) is None


@pytest.mark.django_db
def test_the_status_says_x_of_y_today_and_the_eta(campaign, sending_ip):
    _send(campaign, 10, sent=1)
    _send(campaign, 20, sent=2)
    _send(campaign, 15, sent=3)

    status = warmup_status(ip_or_domain=sending_ip, provider="google", remaining=100, today=day(3))

    # Day 3: 15 of 40 sent; 25 more today, then no cap after the 3-day schedule.
    assert (status.day, status.cap, status.sent_today, status.held_for) == (3, 40, 15, [])
    assert status.eta == day(4)
    assert warmup_status(
        ip_or_domain=sending_ip, provider="google", remaining=25, today=day(3)
    ).eta == day(3)


@pytest.mark.django_db
def test_the_first_send_sets_day_one(pool):
    fresh = SendingIp.objects.create(address="127.0.0.4", pool=pool, helo_hostname="mta4.test")
    assert warmup.warmup_mark_started(ip_or_domain=fresh, today=day(2)) is True
    assert warmup.warmup_mark_started(ip_or_domain=fresh, today=day(5)) is False
    fresh.refresh_from_db()
    assert fresh.warmup_started_on == day(2)


@pytest.mark.django_db
def test_ips_and_domains_past_the_schedule_for_every_provider_graduate(
    campaign, sending_ip, pool, workspace
):
    SendingIp.objects.create(
        address="127.0.0.3", pool=pool, helo_hostname="mta3.test", warmup_started_on=START
    )
    SendingIp.objects.create(  # sent nothing: stays warming
        address="127.0.0.5", pool=pool, helo_hostname="mta5.test", warmup_started_on=START
    )
    for n in (1, 2, 3):
        _send(campaign, 5, sent=n)
        _send(campaign, 5, sent=n, provider="yahoo")
        _send(campaign, 5, sent=n, source_ip="127.0.0.3")
    # From another domain: 127.0.0.3's Yahoo ramp holds, shop.test's does not.
    other = _campaign(workspace, "news@other.test")
    _send(other, 5, sent=2, source_ip="127.0.0.3", provider="yahoo")
    _send(other, 1, state="bounced", bounced=2, source_ip="127.0.0.3", provider="yahoo")
    domain = SendingDomain.objects.create(
        workspace=workspace, domain="shop.test", warmup_started_on=START
    )
    WarmupSchedule.objects.filter(is_default=True).update(daily_caps=[10, 20, 40])

    assert warmup_graduate(day(3)) == {"ips": 0, "domains": 0}
    assert warmup_graduate(day(4)) == {"ips": 1, "domains": 1}

    states = dict(SendingIp.objects.values_list("address", "state"))
    # 127.0.0.3's Yahoo ramp held on day 3 (one bounce in six on day 2).
    assert states == {"127.0.0.2": "active", "127.0.0.3": "warming", "127.0.0.5": "warming"}
    domain.refresh_from_db()
    assert domain.is_warmed_up is True
    assert set(AuditEntry.objects.values_list("verb", "target_label")) == {
        ("sending_ip.warmed_up", "127.0.0.2"),
        ("sending_domain.warmed_up", "shop.test"),
    }
    assert warmup_graduate(day(5)) == {"ips": 0, "domains": 0}


@pytest.mark.django_db
def test_engaged_contacts_come_first(campaign, workspace):
    now = timezone.now()
    recent, old = now - dt.timedelta(days=10), now - dt.timedelta(days=200)
    rows = {
        "never@x.test": {},
        "opened-long-ago@x.test": {"last_opened_at": old},
        "clicked@x.test": {"last_clicked_at": recent},
        "opened@x.test": {"last_opened_at": recent, "last_clicked_at": old},
    }
    contacts = {
        email: ContactFactory(workspace=workspace, email=email, **fields)
        for email, fields in rows.items()
    }
    for contact in contacts.values():
        Delivery.objects.create(
            workspace=workspace, campaign=campaign, contact=contact, address=contact.email
        )
    engaged = {"clicked@x.test", "opened@x.test"}

    term, params = engaged_first_sql(contact_alias="c", now=now)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT d.address FROM sending_delivery d JOIN contacts_contact c "
            f"ON c.id = d.contact_id WHERE d.campaign_id = %s ORDER BY {term}, d.id",
            [campaign.pk, *params],
        )
        ordered = [row[0] for row in cursor.fetchall()]
    assert set(ordered[:2]) == engaged
    assert ordered[2:] == ["never@x.test", "opened-long-ago@x.test"]

    by_orm = (
        Delivery.objects.filter(campaign=campaign)
        .annotate(rank=engaged_first_annotation(prefix="contact__", now=now))
        .order_by("rank", "id")
        .values_list("address", flat=True)
    )
    assert list(by_orm) == ordered
    contact_ranks = dict(
        Contact.objects.filter(workspace=workspace)
        .annotate(rank=engaged_first_annotation(now=now))
        .values_list("email", "rank")
    )
    assert {email for email, rank in contact_ranks.items() if rank == 0} == engaged
    with pytest.raises(ValueError, match="Not an SQL alias"):
        engaged_first_sql(contact_alias="c; DROP TABLE x")


# --- the admin -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_refuses_a_decreasing_schedule_with_a_clear_message(operator_client):
    url = reverse("admin:sending_warmupschedule_add")
    page = operator_client.post(url, {"name": "Bad", "daily_caps": "[50, 500, 100]"})
    assert page.status_code == 200
    assert "Day 3&#x27;s cap (100) is lower than day 2&#x27;s (500)" in page.content.decode()
    page = operator_client.post(url, {"name": "Negative", "daily_caps": "[-5]"})
    assert "must be a positive number" in page.content.decode()
    assert not WarmupSchedule.objects.filter(name__in=["Bad", "Negative"]).exists()

    page = operator_client.post(url, {"name": "Gentle", "daily_caps": "[20, 40, 80]"})
    assert page.status_code == 302
    assert WarmupSchedule.objects.get(name="Gentle").daily_caps == [20, 40, 80]


@pytest.mark.django_db
def test_the_admin_edits_provider_limits_and_refuses_zero(operator_client):
    limit = ProviderLimit.objects.get(provider="google")
    url = reverse("admin:sending_providerlimit_change", args=[limit.pk])
    fields = {"provider": "google", "messages_per_minute": 900, "max_connections": 0}
    page = operator_client.post(url, {**fields, "messages_per_connection": 50})
    assert "Must be at least 1" in page.content.decode()

    page = operator_client.post(
        url, {**fields, "max_connections": 4, "messages_per_connection": 50}
    )
    assert page.status_code == 302
    limit.refresh_from_db()
    assert (limit.messages_per_minute, limit.max_connections) == (900, 4)


@pytest.mark.django_db
def test_recipient_domains_are_searchable(operator_client):
    RecipientDomain.objects.create(domain="acme-corp.com", provider="google")
    RecipientDomain.objects.create(domain="contoso-ltd.com", provider="microsoft")
    changelist = reverse("admin:sending_recipientdomain_changelist")

    page = operator_client.get(changelist + "?q=acme").content.decode()
    assert "acme-corp.com" in page
    assert "contoso-ltd.com" not in page
