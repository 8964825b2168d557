"""A campaign's "warming up: X of Y today to <provider>, the rest by <date>" lines: the
pool's warming IPs together, the new sending domain, the smaller room, the ETA, the
hold after a bad day, and the Delivery panel that shows them."""

import datetime as dt
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import Role
from campaigns.models import Campaign
from sending.models import (
    Delivery,
    IpPool,
    SendingDomain,
    SendingIp,
    WarmupSchedule,
    WorkspacePool,
)
from sending.warmup import campaign_warmup_lines

pytestmark = pytest.mark.django_db

UTC = dt.UTC
START = dt.date(2026, 3, 1)
_serial = itertools.count()


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n - 1)


def at(n: int) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(12), tzinfo=UTC)


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.WARMUP_HOLD_DEFERRAL_PERCENT = 20.0
    settings.WARMUP_HOLD_BOUNCE_PERCENT = 5.0
    settings.WARMUP_HOLD_COMPLAINT_PERCENT = 0.1
    settings.WARMUP_NEW_DOMAINS = True


@pytest.fixture
def pool(workspace):
    schedule = WarmupSchedule.objects.create(name="Short", daily_caps=[10, 20, 40])
    pool = IpPool.objects.create(name="Warm", warmup_schedule=schedule)
    WorkspacePool.objects.create(workspace=workspace, pool=pool)
    return pool


def _ip(pool, address, *, started_on=START, state=SendingIp.State.WARMING):
    return SendingIp.objects.create(
        address=address, pool=pool, helo_hostname="mta.test", state=state,
        warmup_started_on=started_on,
    )  # fmt: skip


@pytest.fixture
def domain(workspace):
    """The campaign's verified sending domain, warmed up unless a test says otherwise."""
    return SendingDomain.objects.create(
        workspace=workspace,
        domain="shop.test",
        status=SendingDomain.Status.VERIFIED,
        warmup_started_on=START,
        is_warmed_up=True,
    )


@pytest.fixture
def campaign(workspace, domain):
    return Campaign.objects.create(
        workspace=workspace,
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        from_email="news@shop.test",
        status=Campaign.Status.SENDING,
    )


def _rows(campaign, n, *, state, provider="google", source_ip=None, when=None, **fields):
    stamp = {}
    if state == "sent":
        stamp = {"sent_at": when, "updated_at": when}
    elif state in ("deferred", "bounced"):
        stamp = {"updated_at": when}
    Delivery.objects.bulk_create(
        Delivery(
            workspace_id=campaign.workspace_id,
            campaign=campaign,
            address=f"w{next(_serial)}@{provider}.test",
            state=state,
            provider=provider,
            source_ip=source_ip,
            **stamp,
            **fields,
        )
        for _ in range(n)
    )


def test_the_pool_s_warming_ips_add_up_and_the_eta_follows_their_ramps(campaign, pool):
    _ip(pool, "127.0.0.2")
    _ip(pool, "127.0.0.3")
    # .2 sent 10 to Google on day 1 (healthy): day 2 of the ramp, cap 20. .3 sent nothing
    # to Google: still day 1, cap 10. Today (day 2) .2 sent 5 and had 1 deferred, .3 sent 3.
    _rows(campaign, 10, state="sent", source_ip="127.0.0.2", when=at(1))
    _rows(campaign, 5, state="sent", source_ip="127.0.0.2", when=at(2))
    _rows(campaign, 1, state="deferred", source_ip="127.0.0.2", when=at(2),
          next_attempt_at=at(3))  # fmt: skip
    _rows(campaign, 3, state="sent", source_ip="127.0.0.3", when=at(2))
    _rows(campaign, 150, state="queued")

    [line] = campaign_warmup_lines(campaign=campaign, today=day(2))

    # 9 of 30 taken: 21 go today, 129 left; day 3: caps 40 + 20, 69 left; day 4: .2 is
    # past its 3-day schedule, no cap: the rest go.
    assert (line.provider, line.limit, line.attempted_today, line.cap) == ("google", "ip", 9, 30)
    assert (line.queued, line.held_for) == (150, [])
    assert line.eta == day(4)
    assert campaign_warmup_lines(campaign=campaign, today=day(2))[0].eta == day(4)
    _rows(campaign, 1, state="queued", provider="yahoo")
    lines = {line.provider: line for line in campaign_warmup_lines(campaign=campaign, today=day(2))}
    # Yahoo: both IPs on day 1 (10 each), nothing taken, 1 waiting: it goes today.
    assert (lines["yahoo"].attempted_today, lines["yahoo"].cap) == (0, 20)
    assert lines["yahoo"].eta == day(2)


def test_a_new_sending_domain_binds_when_its_room_is_smaller(campaign, pool, domain):
    _ip(pool, "127.0.0.2")
    _ip(pool, "127.0.0.3")
    domain.is_warmed_up = False
    domain.save()
    WarmupSchedule.objects.filter(is_default=True).update(daily_caps=[5, 12, 30, 40])
    _rows(campaign, 10, state="sent", source_ip="127.0.0.2", when=at(1))
    _rows(campaign, 5, state="sent", source_ip="127.0.0.2", when=at(2))
    _rows(campaign, 1, state="deferred", source_ip="127.0.0.2", when=at(2),
          next_attempt_at=at(3))  # fmt: skip
    _rows(campaign, 3, state="sent", source_ip="127.0.0.3", when=at(2))
    _rows(campaign, 150, state="queued")

    [line] = campaign_warmup_lines(campaign=campaign, today=day(2))

    # The domain (every IP's mail) is on day 2: 9 of 12, room 3 against the IPs' 21.
    assert (line.limit, line.attempted_today, line.cap) == ("domain", 9, 12)
    # 3 today (147 left); day 3: min(IPs 60, domain 30), 117 left; day 4: the IPs have
    # no cap, the domain 40, 77 left; day 5: past the domain's schedule.
    assert line.eta == day(5)


def test_a_domain_alone_binds_without_warming_ips(campaign, domain):
    domain.is_warmed_up = False
    domain.save()
    WarmupSchedule.objects.filter(is_default=True).update(daily_caps=[50, 100])
    _rows(campaign, 2, state="sent", when=at(1))
    _rows(campaign, 60, state="queued", provider="microsoft")

    [line] = campaign_warmup_lines(campaign=campaign, today=day(1))

    assert (line.provider, line.limit, line.attempted_today, line.cap) == (
        "microsoft", "domain", 0, 50,
    )  # fmt: skip
    assert line.eta == day(2)


def test_yesterday_s_deferrals_hold_the_ramp_and_say_so(campaign, pool):
    _ip(pool, "127.0.0.2")
    _rows(campaign, 8, state="sent", source_ip="127.0.0.2", when=at(1))
    _rows(campaign, 4, state="deferred", source_ip="127.0.0.2", when=at(1),
          next_attempt_at=at(3))  # fmt: skip
    _rows(campaign, 30, state="queued")

    [line] = campaign_warmup_lines(campaign=campaign, today=day(2))

    # 4 of 12 deferred (33%): day 1 did not count, the cap stays at day 1's 10.
    assert (line.cap, line.attempted_today, line.held_for) == (10, 0, ["deferral"])
    assert line.held_text == "deferrals"
    # 10 today, 20 on day 3 (the ramp's day 2): the 30 have gone by then.
    assert line.eta == day(3)


@pytest.mark.parametrize(
    "states",
    [
        [SendingIp.State.ACTIVE, SendingIp.State.ACTIVE],
        # An active IP takes any volume: the warming one does not hold the campaign back.
        [SendingIp.State.ACTIVE, SendingIp.State.WARMING],
    ],
)
def test_no_line_without_a_binding_cap(campaign, pool, states):
    for n, state in enumerate(states, start=2):
        _ip(pool, f"127.0.0.{n}", state=state)
    _rows(campaign, 50, state="queued")

    assert campaign_warmup_lines(campaign=campaign, today=day(2)) == []


def test_paused_and_disabled_ips_do_not_count(campaign, pool):
    _ip(pool, "127.0.0.2")
    _ip(pool, "127.0.0.3", state=SendingIp.State.PAUSED)
    SendingIp.objects.filter(pk=_ip(pool, "127.0.0.4").pk).update(is_active=False)
    _rows(campaign, 50, state="queued")

    [line] = campaign_warmup_lines(campaign=campaign, today=day(1))

    assert line.cap == 10


def test_the_query_count_does_not_grow_with_providers(campaign, pool, domain):
    _ip(pool, "127.0.0.2")
    domain.is_warmed_up = False
    domain.save()
    _rows(campaign, 5, state="queued", provider="google")
    _rows(campaign, 2, state="sent", source_ip="127.0.0.2", when=at(1), provider="google")

    with CaptureQueriesContext(connection) as one_provider:
        assert len(campaign_warmup_lines(campaign=campaign, today=day(2))) == 1
    for provider in ("yahoo", "microsoft"):
        _rows(campaign, 5, state="queued", provider=provider)
        _rows(campaign, 2, state="sent", source_ip="127.0.0.2", when=at(1), provider=provider)
    with CaptureQueriesContext(connection) as three_providers:
        assert len(campaign_warmup_lines(campaign=campaign, today=day(2))) == 3

    assert len(three_providers) == len(one_provider)


# --- the Delivery panel --------------------------------------------------------------------


def _panel(client, workspace, campaign) -> str:
    url = reverse(
        "sending:campaign_progress",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": campaign.pk},
    )
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def test_the_delivery_panel_shows_the_warmup_line(workspace, member_client, campaign, pool):
    today = timezone.localdate()
    now = timezone.now()
    _ip(pool, "127.0.0.2", started_on=today - dt.timedelta(days=1))
    _rows(campaign, 10, state="sent", source_ip="127.0.0.2", when=now - dt.timedelta(days=1))
    _rows(campaign, 7, state="sent", source_ip="127.0.0.2", when=now)
    _rows(campaign, 63, state="queued")
    client = member_client(workspace, Role.VIEWER)

    text = _panel(client, workspace, campaign)

    # Day 2: 7 of 20 today, 13 more; 40 tomorrow; the last 10 the day after (no cap).
    eta = today + dt.timedelta(days=2)
    assert (
        f'data-fact="warmup_google" data-limit="ip" data-eta="{eta.isoformat()}">'
        'Warming up: <span data-fact="warmup_attempted">7</span> of '
        '<span data-fact="warmup_cap">20</span> today to Google'
    ) in text
    assert f"the rest by {eta.day} {eta:%b}" in text
    assert "held today" not in text

    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PAUSED)
    assert 'data-fact="warmup_google"' in _panel(client, workspace, campaign)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)
    assert 'data-fact="warmup_' not in _panel(client, workspace, campaign)


def test_the_panel_says_when_the_ramp_is_held(workspace, member_client, campaign, pool):
    now = timezone.now()
    _ip(pool, "127.0.0.2", started_on=timezone.localdate() - dt.timedelta(days=1))
    _rows(campaign, 8, state="sent", source_ip="127.0.0.2", when=now - dt.timedelta(days=1))
    _rows(campaign, 1, state="bounced", source_ip="127.0.0.2", when=now - dt.timedelta(days=1))
    _rows(campaign, 5, state="queued", provider="yahoo")
    _rows(campaign, 5, state="queued", provider="google")

    text = _panel(member_client(workspace, Role.VIEWER), workspace, campaign)

    assert "held today after yesterday's bounces" in text
    assert 'data-fact="warmup_yahoo"' in text  # yahoo's ramp is on day 1: a cap, no hold
    assert text.count('data-fact="warmup_held"') == 1
    assert "the 5 waiting go today" in text


def test_the_panel_shows_no_line_when_the_pool_is_warm(workspace, member_client, campaign, pool):
    _ip(pool, "127.0.0.2", state=SendingIp.State.ACTIVE)
    _rows(campaign, 20, state="queued")

    text = _panel(member_client(workspace, Role.VIEWER), workspace, campaign)

    assert 'data-fact="warmup_' not in text
    assert "Warming up" not in text
