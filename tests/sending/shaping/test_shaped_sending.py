"""Traffic shaping end to end in this process: campaigns go out through the `mx` transport to
a loopback sink, chunk by chunk, and what the sink saw (source addresses, arrival times,
counts) shows the lanes, rates, back-off, warm-up caps, fairness and holds at work.

Real PostgreSQL, Redis, DNS server and SMTP sink; clocks are Redis's TIME for rates (short
THROTTLE_WINDOW_SECONDS where time must pass) and `sending.shaping.shaping_now` for days.
"""

import datetime as dt
import itertools
import time
from collections import Counter

import pytest
import redis
from django.conf import settings as django_settings
from django.db.models import Count
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact
from sending import shaping, throttle
from sending.models import Delivery, ProviderLimit, SendingDomain, WarmupSchedule
from sending.pipeline import campaign_finish_if_done, campaigns_start_due, chunk_send
from sending.queue_state import warming_waits
from sending.shaping import send_hosts, shaping_cache_clear
from tests.sending.shaping.conftest import (
    PROVIDER_DOMAINS,
    RATE_LIMIT_REPLY,
    Arrival,
    provider_limit_set,
    recipient_address,
    send_rounds,
    shaped_campaign,
    shared_pool,
)

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

State = Delivery.State


@pytest.fixture(autouse=True)
def _fresh_shaping_caches():
    """Provider limits, pools and caps are cached per process: each test reads its own."""
    shaping_cache_clear()
    yield
    shaping_cache_clear()


def _states(campaign: Campaign) -> dict[str, int]:
    rows = Delivery.objects.filter(campaign=campaign).values("state").annotate(n=Count("pk"))
    return {row["state"]: row["n"] for row in rows}


def _bursts(arrivals: list[Arrival], gap: float = 0.5) -> list[int]:
    """Sizes of the groups of arrivals separated by more than `gap` seconds: one per grant
    when grants come a window apart."""
    sizes: list[int] = []
    last = None
    for arrival in sorted(arrivals, key=lambda a: a.at):
        if last is None or arrival.at - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = arrival.at
    return sizes


def _max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(
        (sum(1 for other in times[i:] if other < start + window) for i, start in enumerate(times)),
        default=0,
    )


def _flush_test_redis() -> None:
    """Redis restarted empty, as far as our keys go: only the database the settings name."""
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()


# --- 1. source addresses ----------------------------------------------------------------------


def test_each_message_leaves_from_its_lanes_address_and_both_addresses_carry_mail(
    mx_sink, dns_server, settings
):
    settings.THROTTLE_WINDOW_SECONDS = 60.0
    shared_pool("127.0.0.2", "127.0.0.3")
    # 10 a window per IP and provider: each lane carries exactly half of its provider's 20.
    provider_limit_set("google", messages_per_minute=10)
    provider_limit_set("yahoo", messages_per_minute=10)
    domains = ("gmail.com", "yahoo.com")
    campaign = shaped_campaign(dns_server, recipients=40, recipient_domains=domains)
    assert campaigns_start_due() == [campaign.pk]

    steps = send_rounds([campaign.pk])

    assert steps[-1].report is None
    accepted = mx_sink.accepted()
    everyone = {recipient_address(i, domains) for i in range(40)}
    assert Counter(a.recipient for a in accepted) == Counter(everyone)  # each exactly once
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert _states(campaign) == {State.SENT: 40}
    assert {d.address: d.source_ip for d in deliveries} == {a.recipient: a.peer for a in accepted}
    assert {d.address: d.provider for d in deliveries} == {
        d.address: PROVIDER_DOMAINS[d.address.rsplit("@", 1)[1]] for d in deliveries
    }
    assert Counter((a.peer, PROVIDER_DOMAINS[a.domain]) for a in accepted) == {
        ("127.0.0.2", "google"): 10,
        ("127.0.0.3", "google"): 10,
        ("127.0.0.2", "yahoo"): 10,
        ("127.0.0.3", "yahoo"): 10,
    }
    assert campaign_finish_if_done(campaign_id=campaign.pk)


# --- 2. a provider's rate ---------------------------------------------------------------------


@pytest.mark.serial
def test_a_providers_rate_holds_in_every_window_and_does_not_slow_the_others(
    mx_sink, dns_server, settings
):
    settings.THROTTLE_WINDOW_SECONDS = 2.0
    per_window = 10
    shared_pool("127.0.0.2")
    provider_limit_set("google", messages_per_minute=per_window * 30)  # 10 per 2 s
    provider_limit_set("yahoo", messages_per_minute=60_000)
    domains = ("gmail.com", "yahoo.com")
    campaign = shaped_campaign(dns_server, recipients=60, recipient_domains=domains)
    campaigns_start_due()

    steps = send_rounds([campaign.pk])

    assert steps[-1].report is None
    google, yahoo = mx_sink.accepted("gmail.com"), mx_sink.accepted("yahoo.com")
    assert len(google) == len({a.recipient for a in google}) == 30
    assert len(yahoo) == len({a.recipient for a in yahoo}) == 30
    google_times = [a.at for a in google]
    assert _max_in_any_window(google_times, 2.0) <= per_window
    # 30 at 10 a window: two windows of waiting at least.
    assert max(google_times) - min(google_times) >= 2 * 2.0
    # Yahoo's 30 all went within the first window, while Google's waited.
    started = min(a.at for a in mx_sink.accepted())
    assert max(a.at for a in yahoo) - started < 2.0
    assert _states(campaign) == {State.SENT: 60}


# --- 3. adaptive back-off ---------------------------------------------------------------------


@pytest.mark.serial
def test_rate_limit_replies_slow_the_lane_down_and_clean_windows_bring_it_back(
    mx_sink, dns_server, settings
):
    assert throttle.reply_is_rate_limited(
        code=450, enhanced="4.7.0", text=RATE_LIMIT_REPLY.removeprefix("450 ")
    )
    settings.THROTTLE_WINDOW_SECONDS = 1.0
    settings.THROTTLE_BACKOFF_FACTOR = 0.5
    settings.THROTTLE_RECOVERY_STEP = 0.5
    full = 20
    key = "ip:127.0.0.2:google"
    shared_pool("127.0.0.2")
    provider_limit_set("google", messages_per_minute=full * 60)  # 20 a 1-s window
    campaign = shaped_campaign(dns_server, recipients=100)
    campaigns_start_due()

    def grants(steps) -> list[int]:
        return [step.claimed for step in steps if step.claimed]

    # Accepting: a full window's worth.
    accepting = send_rounds([campaign.pk], until=lambda steps: bool(grants(steps)))
    assert grants(accepting) == [full]
    assert throttle.rate_factor(key=key) == 1.0

    # Refusing "too many messages": each refused window halves the next (once a window).
    mx_sink.refusal = lambda address: RATE_LIMIT_REPLY
    refusing = send_rounds([campaign.pk], until=lambda steps: len(grants(steps)) >= 4)
    refused = grants(refusing)
    assert refused[:2] == [full, full // 2]
    assert refused == sorted(refused, reverse=True)
    assert refused[-1] <= full // 4
    assert _bursts(mx_sink.refused()) == refused  # the sink saw fewer per window
    assert throttle.rate_factor(key=key) <= 0.25
    states = _states(campaign)
    assert states[State.DEFERRED] == sum(refused) == len(mx_sink.refused())
    assert State.BOUNCED not in states
    assert State.FAILED not in states
    deferred = Delivery.objects.filter(campaign=campaign, state=State.DEFERRED)
    assert all("too many messages" in d.last_response for d in deferred)
    assert all(d.next_attempt_at > timezone.now() for d in deferred)

    # Accepting again: the factor climbs back by THROTTLE_RECOVERY_STEP a clean window.
    mx_sink.refusal = None
    factors: list[tuple[float, float]] = []  # (when, factor) before each chunk and at the end

    def recovered(steps) -> bool:
        factors.append((time.monotonic(), throttle.rate_factor(key=key)))
        return factors[-1][1] == 1.0

    recovering = send_rounds([campaign.pk], until=recovered)
    climbed = grants(recovering)
    assert climbed[0] <= full // 4  # the first clean window still goes slowly
    values = [factor for _, factor in factors]
    assert values == sorted(values)
    steps_up = sorted(set(values))
    assert steps_up[0] <= 0.25
    assert len(steps_up) >= 3  # from a quarter or less, two steps of 0.5 at least
    assert [b - a for a, b in itertools.pairwise(steps_up)][-1] <= 0.5
    # One step a window: the last step came a window after the one before it (as seen
    # after the chunks that made them, give or take a few milliseconds).
    rose_at = [next(at for at, factor in factors if factor == value) for value in steps_up]
    assert rose_at[-1] - rose_at[-2] >= 0.9 * settings.THROTTLE_WINDOW_SECONDS

    # The deferred rows go later, at the full rate again.
    Delivery.objects.filter(campaign=campaign, state=State.DEFERRED).update(
        next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
    )
    before = len(mx_sink.accepted())
    time.sleep(settings.THROTTLE_WINDOW_SECONDS + 0.1)  # the last slowed grant lapses
    draining = send_rounds([campaign.pk])
    drained = grants(draining)
    assert drained[:-1] == [full] * (len(drained) - 1)
    assert _bursts(mx_sink.accepted()[before:]) == drained
    accepted = mx_sink.accepted()
    assert len(accepted) == len({a.recipient for a in accepted}) == 100
    assert _states(campaign) == {State.SENT: 100}
    retried = Delivery.objects.filter(campaign=campaign, attempt_count=2).count()
    assert retried == sum(refused)


# --- 4. and 5. warm-up caps -------------------------------------------------------------------


def _warming_campaign(dns_server, engaged: range) -> Campaign:
    """A 30-recipient Google campaign from a pool whose one IP warms up from today with
    [5, 10, 20]; contacts number `engaged` opened lately."""
    shared_pool(
        "127.0.0.2",
        state="warming",
        schedule=[5, 10, 20],
        warmup_started_on=timezone.localdate(),
    )
    campaign = shaped_campaign(dns_server, recipients=30)
    Contact.objects.filter(
        workspace=campaign.workspace,
        email__in=[recipient_address(i, ("gmail.com",)) for i in engaged],
    ).update(last_opened_at=timezone.now() - dt.timedelta(days=3))
    assert campaigns_start_due() == [campaign.pk]
    return campaign


def test_a_warming_ip_stops_at_its_daily_cap_and_sends_the_next_days_cap_tomorrow(
    mx_sink, dns_server, settings, monkeypatch
):
    settings.THROTTLE_WINDOW_SECONDS = 60.0
    engaged = range(20, 28)  # late in id order: only engagement puts them first
    campaign = _warming_campaign(dns_server, engaged)
    today = timezone.localdate()

    steps = send_rounds([campaign.pk])

    assert steps[-1].is_long_wait  # capped for today: the chain ends
    first_day = {a.recipient for a in mx_sink.accepted()}
    assert first_day == {recipient_address(i, ("gmail.com",)) for i in range(20, 25)}
    assert _states(campaign) == {State.SENT: 5, State.QUEUED: 25}
    assert warming_waits() == {"google": {campaign.pk}}
    report = chunk_send(campaign_id=campaign.pk)
    assert report.throttled
    assert report.retry_after is None

    # The next day, after a healthy first day: day 2's cap of 10, engaged ones first.
    tomorrow = timezone.now() + dt.timedelta(days=1)
    monkeypatch.setattr(shaping, "shaping_now", lambda: tomorrow)
    shaping_cache_clear()
    steps = send_rounds([campaign.pk])

    assert steps[-1].is_long_wait
    second_day = {a.recipient for a in mx_sink.accepted()} - first_day
    assert second_day == {recipient_address(i, ("gmail.com",)) for i in [25, 26, 27, *range(7)]}
    assert _states(campaign) == {State.SENT: 15, State.QUEUED: 15}
    assert len(mx_sink.accepted()) == 15
    assert warming_waits(day=today + dt.timedelta(days=1)) == {"google": {campaign.pk}}


def test_a_warming_ips_cap_holds_after_redis_restarts_empty(mx_sink, dns_server, settings):
    settings.THROTTLE_WINDOW_SECONDS = 60.0
    campaign = _warming_campaign(dns_server, engaged=range(0))
    send_rounds([campaign.pk])
    assert len(mx_sink.accepted()) == 5

    _flush_test_redis()
    shaping_cache_clear()
    steps = send_rounds([campaign.pk])

    assert [step.claimed for step in steps] == [0]
    assert steps[-1].is_long_wait
    assert len(mx_sink.accepted()) == 5
    assert _states(campaign) == {State.SENT: 5, State.QUEUED: 25}
    # Rebuilt from the Delivery rows of today.
    counter = throttle.day_count_get(key="warmup:ip:127.0.0.2:google", day=timezone.localdate())
    assert counter == 5


def test_a_new_domains_cap_holds_after_redis_restarts_empty(mx_sink, dns_server, settings):
    settings.THROTTLE_WINDOW_SECONDS = 60.0
    settings.WARMUP_NEW_DOMAINS = True
    WarmupSchedule.objects.filter(is_default=True).update(daily_caps=[5, 10, 20])
    shared_pool()  # no sending IPs: only the new domain shapes the claims
    campaign = shaped_campaign(dns_server, recipients=20, domain_warmed_up=False)
    domain = SendingDomain.objects.get(workspace=campaign.workspace)
    campaigns_start_due()

    steps = send_rounds([campaign.pk])

    assert steps[-1].is_long_wait
    assert len(mx_sink.accepted()) == 5
    domain.refresh_from_db()
    assert domain.warmup_started_on == timezone.localdate()

    _flush_test_redis()
    shaping_cache_clear()
    steps = send_rounds([campaign.pk])

    assert [step.claimed for step in steps] == [0]
    assert steps[-1].is_long_wait
    assert len(mx_sink.accepted()) == 5
    assert _states(campaign) == {State.SENT: 5, State.QUEUED: 15}
    key = f"warmup:domain:{domain.pk}:google"
    assert throttle.day_count_get(key=key, day=timezone.localdate()) == 5


# --- 6. fairness ------------------------------------------------------------------------------


@pytest.mark.serial
def test_a_small_campaign_gets_its_fair_share_beside_a_huge_one(mx_sink, dns_server, settings):
    settings.THROTTLE_WINDOW_SECONDS = 1.0
    rate = 40
    shared_pool("127.0.0.2")
    provider_limit_set("google", messages_per_minute=rate * 60)  # 40 a 1-s window
    big = shaped_campaign(dns_server, recipients=50_000, sender_domain="news.big.example")
    small = shaped_campaign(
        dns_server,
        recipients=100,
        recipient_domains=("googlemail.com",),
        sender_domain="news.small.example",
    )
    assert sorted(campaigns_start_due()) == sorted([big.pk, small.pk])

    # Two workers, one a campaign; the big one asks first and has the rate to itself.
    steps = send_rounds(
        [big.pk, small.pk],
        until=lambda steps: any(s.campaign_id == small.pk and s.report is None for s in steps),
    )

    small_grants = [s.claimed for s in steps if s.campaign_id == small.pk and s.claimed]
    big_grants = [s.claimed for s in steps if s.campaign_id == big.pk and s.claimed]
    assert small_grants == [rate // 2] * 5  # half the rate every window, from its first
    assert big_grants[0] == rate  # alone in the first window
    assert set(big_grants[1:]) == {rate // 2}  # then no more than its share
    assert _states(small) == {State.SENT: 100}
    big_sent = Delivery.objects.filter(campaign=big, state=State.SENT).count()
    assert big_sent == sum(big_grants) <= rate + len(small_grants) * rate // 2 + rate // 2
    small_arrivals = mx_sink.accepted("googlemail.com")
    assert len({a.recipient for a in small_arrivals}) == len(small_arrivals) == 100
    assert _bursts(small_arrivals) == small_grants
    assert len(mx_sink.accepted("gmail.com")) == big_sent


# --- 7. a held provider -----------------------------------------------------------------------


@pytest.mark.parametrize("addresses", [("127.0.0.2",), ()], ids=["with-ips", "no-ips"])
def test_a_held_provider_gets_nothing_until_released(mx_sink, dns_server, settings, addresses):
    settings.THROTTLE_WINDOW_SECONDS = 60.0
    shared_pool(*addresses)
    ProviderLimit.objects.filter(provider="google").update(
        is_held=True, held_reason="Deferring everything", held_at=timezone.now()
    )
    domains = ("gmail.com", "yahoo.com")
    campaign = shaped_campaign(dns_server, recipients=20, recipient_domains=domains)
    campaigns_start_due()

    steps = send_rounds([campaign.pk])

    assert steps[-1].is_long_wait
    assert mx_sink.accepted("gmail.com") == []
    assert len(mx_sink.accepted("yahoo.com")) == 10
    assert Delivery.objects.filter(campaign=campaign, provider="google").count() == 10
    assert _states(campaign) == {State.SENT: 10, State.QUEUED: 10}

    ProviderLimit.objects.filter(provider="google").update(is_held=False)
    shaping_cache_clear()  # as SENDING_POLICY_CACHE_SECONDS passing would
    steps = send_rounds([campaign.pk])

    assert steps[-1].report is None
    accepted = mx_sink.accepted()
    assert len(mx_sink.accepted("gmail.com")) == 10
    assert Counter(a.recipient for a in accepted) == Counter(
        recipient_address(i, domains) for i in range(20)
    )
    assert _states(campaign) == {State.SENT: 20}


# --- 8. a pool bound on another host ----------------------------------------------------------


def test_a_pool_bound_on_another_host_sends_nothing_here(mx_sink, dns_server, settings):
    settings.SENDING_HOST_NAME = "mta1"
    pool = shared_pool("127.0.0.2", bound_host="mta9")
    campaign = shaped_campaign(dns_server, recipients=10)
    campaigns_start_due()

    report = chunk_send(campaign_id=campaign.pk)

    assert report is not None
    assert report.throttled
    assert report.claimed == 0
    assert report.retry_after is None  # the chain ends here: mta9's workers send it
    assert mx_sink.offered() == []
    assert _states(campaign) == {State.QUEUED: 10}
    assert send_hosts(pool) == ["mta9"]
