"""The throttles on real Redis, one process, clocks injected (no sleeping for windows)."""

import datetime as dt
import threading
import time
from itertools import pairwise

import pytest
import redis
from django.utils import timezone

from campaigns.models import Campaign
from sending import throttle
from sending.models import Delivery
from tests.conftest import redis_test_url
from tests.factories import WorkspaceFactory

W = 2.0  # window (seconds)
T0 = 1_000_000.0  # an injected clock far from today's


def _redis() -> redis.Redis:
    return redis.Redis.from_url(redis_test_url())


def _end_of_window(start: float = T0) -> float:
    """The first moment at which grants taken at `start` no longer count."""
    return start + W + throttle.rate_margin_seconds(window_seconds=W) + 1e-6


def _take(wanted: int, at: float, *, limit: int = 3, **extra) -> int:
    return throttle.rate_take(
        key="p", limit=limit, wanted=wanted, window_seconds=W, now=at, **extra
    )


# --- rates -------------------------------------------------------------------------------


def test_rate_grants_up_to_the_limit_and_frees_each_grant_one_window_later():
    assert _take(5, T0) == 3
    assert _take(1, T0 + 1) == 0
    assert _take(1, T0 + W) == 0  # the margin: a grant holds a little longer than W
    assert _take(5, _end_of_window()) == 3


def test_rate_window_slides_instead_of_resetting_at_a_boundary():
    assert _take(2, T0) == 2
    assert _take(2, T0 + 1.5) == 1
    # the two of T0 lapse; the one of T0+1.5 still counts
    assert _take(5, _end_of_window(T0)) == 2
    assert _take(5, _end_of_window(T0 + 1.5)) == 1


def test_rate_never_holds_more_than_the_limit_in_any_window():
    """A burst at every instant a slot frees, from many callers: count every window."""
    limit, grants, at = 5, [], T0
    for step in range(400):
        at += 0.013 * (1 + step % 7)
        grants += [at] * _take(1 + step % 3, at, limit=limit)
    for start in grants:
        assert sum(start <= stamp < start + W for stamp in grants) <= limit
    # and the limit is used: about limit per (window + margin)
    windows = (grants[-1] - grants[0]) / (W + throttle.rate_margin_seconds(window_seconds=W))
    assert len(grants) >= 0.9 * limit * windows


def test_rate_uses_redis_time_when_no_clock_is_injected():
    assert throttle.rate_take(key="real", limit=2, wanted=3, window_seconds=W) == 2
    assert throttle.rate_take(key="real", limit=2, wanted=1, window_seconds=W) == 0
    wait = throttle.rate_wait_seconds(key="real", limit=2, window_seconds=W)
    assert W <= wait <= W + throttle.rate_margin_seconds(window_seconds=W)


def test_rate_wait_says_when_the_oldest_grant_lapses():
    assert throttle.rate_wait_seconds(key="p", limit=3, window_seconds=W, now=T0) == 0
    _take(1, T0)
    _take(2, T0 + 0.5)
    wait = throttle.rate_wait_seconds(key="p", limit=3, window_seconds=W, now=T0 + 1)
    assert wait == pytest.approx(_end_of_window(T0) - (T0 + 1), abs=0.001)
    assert _take(1, T0 + 1 + wait) == 1


def test_rate_scripts_are_reloaded_after_redis_forgets_them():
    assert _take(1, T0) == 1
    _redis().script_flush()
    assert _take(5, T0) == 2


def test_rate_return_gives_back_unused_grants():
    assert _take(3, T0) == 3
    assert throttle.rate_return(key="p", count=2) == 2
    assert _take(5, T0 + 0.1) == 2


def test_rate_keys_expire_after_their_window():
    throttle.rate_take(key="ttl", limit=3, wanted=1, window_seconds=W)
    ttl = _redis().pttl("shaping:rate:ttl")
    assert 0 < ttl <= (W + throttle.rate_margin_seconds(window_seconds=W)) * 1000 + 1000


# --- adaptive back-off ---------------------------------------------------------------------


@pytest.fixture
def backoff_settings(settings):
    settings.THROTTLE_BACKOFF_FACTOR = 0.5
    settings.THROTTLE_MIN_FACTOR = 0.05
    settings.THROTTLE_RECOVERY_STEP = 0.1
    return settings


def _backoff(at: float) -> float:
    return throttle.rate_backoff(key="google", window_seconds=W, now=at)


def _recover(at: float) -> float:
    return throttle.rate_recover(key="google", window_seconds=W, now=at)


def test_factor_is_full_until_a_provider_pushes_back(backoff_settings):
    assert throttle.rate_factor(key="google") == 1.0
    assert throttle.rate_limit_effective(key="google", limit=7) == 7
    assert _recover(T0) == 1.0


def test_a_burst_of_rate_limit_replies_in_one_window_halves_the_rate_once(backoff_settings):
    assert [_backoff(T0 + i * 0.1) for i in range(10)] == [0.5] * 10
    assert _backoff(T0 + W) == 0.25
    assert throttle.rate_factor(key="google") == 0.25
    assert throttle.rate_limit_effective(key="google", limit=7) == 1  # floor(1.75)
    assert throttle.rate_limit_effective(key="google", limit=2) == 1  # never 0


def test_backoff_stops_at_the_minimum_factor(backoff_settings):
    factors = [_backoff(T0 + i * W) for i in range(8)]
    assert factors[:4] == [0.5, 0.25, 0.125, 0.0625]
    assert factors[4:] == [0.05] * 4


def test_recovery_is_one_step_per_clean_window_up_to_full(backoff_settings):
    _backoff(T0)
    assert _recover(T0 + W / 2) == 0.5  # not a clean window yet
    assert _recover(T0 + W) == pytest.approx(0.6)
    assert _recover(T0 + W * 1.5) == pytest.approx(0.6)  # one step per window
    at = T0 + W
    for _ in range(3):
        at += W
        _recover(at)
    assert throttle.rate_factor(key="google") == pytest.approx(0.9)
    assert _recover(at + W) == 1.0
    assert not _redis().exists("shaping:factor:google")


def test_a_new_backoff_restarts_the_clean_window(backoff_settings):
    _backoff(T0)
    _recover(T0 + W)  # 0.6
    assert _backoff(T0 + W + 0.5) == pytest.approx(0.3)
    assert _recover(T0 + 2 * W) == pytest.approx(0.3)
    assert _recover(T0 + 2 * W + 0.5) == pytest.approx(0.4)


def test_rate_take_scales_the_limit_by_the_factor_in_the_same_step(backoff_settings):
    _backoff(T0)
    assert _take(10, T0, limit=10, factor_key="google") == 5
    assert _take(10, _end_of_window(), limit=10) == 10  # without the factor key: full


@pytest.mark.parametrize(
    ("code", "enhanced", "text"),
    [
        (
            421,
            "4.7.0",
            "[TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints",
        ),
        (421, "4.7.0", "Try again later, closing connection."),
        (421, "4.7.28", "Mail from your IP address has been temporarily rate limited."),
        (451, "4.7.650", "The mail server has been temporarily rate limited due to IP reputation."),
        (421, "", "Too many concurrent SMTP connections from this IP address"),
    ],
)
def test_rate_limit_replies_are_recognised(code, enhanced, text):
    assert throttle.reply_is_rate_limited(code=code, enhanced=enhanced, text=text)


@pytest.mark.parametrize(
    ("code", "enhanced", "text"),
    [
        (450, "4.7.1", "Client host rejected: greylisted, try again later"),
        (452, "4.2.2", "Mailbox full"),
        (421, "4.3.2", "Service not available, closing transmission channel"),
        (550, "5.7.1", "Rate limited: message refused"),  # a bounce, not a slowdown
        (250, "2.0.0", "OK"),
    ],
)
def test_other_replies_do_not_slow_down(code, enhanced, text):
    assert not throttle.reply_is_rate_limited(code=code, enhanced=enhanced, text=text)


# --- concurrency slots ---------------------------------------------------------------------


def _acquire(holder: str, at: float, *, limit: int = 2, ttl: float = 10.0) -> bool:
    return throttle.slot_acquire(key="mx", limit=limit, holder=holder, ttl=ttl, now=at)


def test_slots_admit_up_to_the_limit_and_free_on_release():
    assert _acquire("a", T0)
    assert _acquire("b", T0)
    assert not _acquire("c", T0)
    assert _acquire("a", T0 + 1)  # a holder asking again keeps its one slot
    assert throttle.slot_count(key="mx", now=T0 + 1) == 2
    throttle.slot_release(key="mx", holder="a")
    assert _acquire("c", T0 + 1)


def test_a_lease_nobody_renews_lapses_and_cannot_be_renewed():
    assert _acquire("a", T0)
    assert _acquire("b", T0 + 5)
    assert throttle.slot_renew(key="mx", holder="b", ttl=10.0, now=T0 + 9)
    assert not _acquire("c", T0 + 9.9)
    assert _acquire("c", T0 + 10)  # a's lease lapsed
    assert not throttle.slot_renew(key="mx", holder="a", ttl=10.0, now=T0 + 10)
    assert not _acquire("a", T0 + 10)  # b (renewed) and c hold both
    assert _acquire("a", T0 + 19)  # b's renewed lease ends at T0+19
    assert throttle.slot_count(key="mx", now=T0 + 19) == 2


def test_slots_use_redis_time_and_expire_with_their_longest_lease():
    assert throttle.slot_acquire(key="real", limit=1, holder="a", ttl=5.0)
    assert not throttle.slot_acquire(key="real", limit=1, holder="b", ttl=5.0)
    assert 5000 < _redis().pttl("shaping:slots:real") <= 6000


# --- daily counters ------------------------------------------------------------------------

COUNTED = ["claimed", "in_flight", "sent", "deferred", "bounced", "unknown"]


def _day_of(at: dt.datetime) -> dt.date:
    return at.astimezone(dt.UTC).date()


def _deliveries_today(key: str, day: dt.date) -> int:
    """Warm-up key "warmup:<ip>:<provider>": the deliveries that left from it that day."""
    _, ip, provider = key.split(":")
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return Delivery.objects.filter(
        source_ip=ip,
        provider=provider,
        state__in=COUNTED,
        sent_at__gte=start,
        sent_at__lt=start + dt.timedelta(days=1),
    ).count()


@pytest.fixture
def campaign(db):
    workspace = WorkspaceFactory()
    return Campaign.objects.create(workspace=workspace, name="Warm-up", status="sending")


def _send(campaign, count: int, *, ip="127.0.0.2", provider="google", sent_at=None) -> None:
    sent_at = sent_at or timezone.now()
    Delivery.objects.bulk_create(
        Delivery(
            workspace=campaign.workspace,
            campaign=campaign,
            address=f"r{Delivery.objects.count() + n}@example.com",
            state="sent",
            source_ip=ip,
            provider=provider,
            sent_at=sent_at,
        )
        for n in range(count)
    )


def test_daily_cap_holds_after_redis_restarts_empty(campaign):
    today, key = _day_of(timezone.now()), "warmup:127.0.0.2:google"
    take = {"key": key, "cap": 50, "day": today, "count_of": _deliveries_today}
    assert throttle.day_count_take(wanted=30, **take) == 30
    _send(campaign, 30)
    _send(campaign, 5, provider="yahoo")  # another key
    _send(campaign, 7, sent_at=timezone.now() - dt.timedelta(days=1))  # yesterday
    assert throttle.day_count_get(key=key, day=today) == 30

    _redis().flushdb()  # a Redis that keeps nothing on disk, restarted
    assert throttle.day_count_get(key=key, day=today) is None
    assert throttle.day_count_take(wanted=50, **take) == 20
    assert throttle.day_count_take(wanted=1, **take) == 0
    assert throttle.day_count_get(key=key, day=today) == 50


def test_a_new_day_starts_from_its_own_rows(campaign):
    today = _day_of(timezone.now())
    _send(campaign, 7, sent_at=timezone.now() - dt.timedelta(days=1))
    take = {
        "key": "warmup:127.0.0.2:google",
        "cap": 10,
        "wanted": 20,
        "count_of": _deliveries_today,
    }
    assert throttle.day_count_take(day=today, **take) == 10
    assert throttle.day_count_take(day=today - dt.timedelta(days=1), **take) == 3


def test_takers_arriving_together_rebuild_once_under_the_lock():
    """Eight takers arrive at once on an empty Redis: the rows are read once, the cap holds."""
    calls, barrier, granted = [], threading.Barrier(8), []

    def count_of(key: str, day: dt.date) -> int:
        calls.append(key)
        time.sleep(0.2)  # a slow query: the others must wait for it, not count again
        return 40

    def taker() -> None:
        barrier.wait()
        granted.append(
            throttle.day_count_take(
                key="k", cap=50, wanted=3, day=dt.date(2026, 1, 1), count_of=count_of
            )
        )

    threads = [threading.Thread(target=taker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["k"]
    assert sum(granted) == 10
    assert throttle.day_count_get(key="k", day=dt.date(2026, 1, 1)) == 50


def test_day_counters_expire_after_two_days_and_unused_grants_come_back():
    day = dt.date(2026, 1, 1)
    counts = throttle.day_counts_rebuild(keys=["a", "b"], day=day, count_of=lambda key, d: 4)
    assert counts == {"a": 4, "b": 4}
    assert 2 * 86400 - 5 < _redis().ttl("shaping:day:2026-01-01:a") <= 2 * 86400
    assert throttle.day_count_take(key="a", cap=5, wanted=3, day=day, count_of=None) == 1
    assert throttle.day_count_return(key="a", day=day, count=1) == 1
    assert throttle.day_count_get(key="a", day=day) == 4


# --- fairness ------------------------------------------------------------------------------


def test_a_lone_campaign_gets_the_whole_rate():
    assert _take(10, T0, limit=10, member="big") == 10


def test_campaigns_sharing_a_rate_take_turns():
    """A campaign of 50,000 and one of 100 share 10 per window: the small one finishes in
    about 100 / 5 windows while the big one keeps sending, whoever asks first."""
    remaining = {"big": 50_000, "small": 100}
    at, windows = T0, 0
    while remaining["small"] and windows < 40:
        # the big one asks first and often, as a busy campaign's many workers would
        order = ["big", "big", "small", "big"] if windows % 2 else ["big", "small", "big"]
        for member in order:
            if remaining[member]:
                remaining[member] -= _take(remaining[member], at, limit=10, member=member)
            at += 0.01
        at = _end_of_window(at)
        windows += 1
    assert remaining["small"] == 0
    assert windows <= 21
    assert 0 < remaining["big"] < 50_000


def test_a_share_left_unused_goes_to_whoever_asks():
    assert _take(3, T0, limit=10, member="small") == 3
    # small's reservation is its share (5) minus what it used; the rest is big's
    assert _take(10, T0 + 0.1, limit=10, member="big") == 5
    assert _take(10, T0 + 0.2, limit=10, member="small") == 2
    # small drops out of the active set after two quiet windows: big gets everything
    later = _end_of_window(T0 + 2 * W)
    assert _take(20, later, limit=10, member="big") == 10


def test_wait_for_a_member_held_back_by_the_others_share():
    assert _take(5, T0, limit=10, member="small") == 5
    assert _take(5, T0 + 0.5, limit=10, member="big") == 5
    assert _take(1, T0 + 0.6, limit=10, member="big") == 0
    wait = throttle.rate_wait_seconds(
        key="p", limit=10, window_seconds=W, now=T0 + 0.6, member="big"
    )
    assert wait == pytest.approx(_end_of_window(T0 + 0.5) - (T0 + 0.6), abs=0.001)


def test_returned_grants_count_for_their_member():
    assert _take(5, T0, limit=10, member="small") == 5
    assert _take(5, T0, limit=10, member="big") == 5
    assert throttle.rate_return(key="p", count=3, member="small") == 3
    assert _take(10, T0 + 0.1, limit=10, member="small") == 3
    assert [_take(1, T0 + 0.2, limit=10, member=m) for m in ("big", "small")] == [0, 0]


def test_grant_timestamps_are_distinct_entries():
    """Many grants at one instant are many entries (no overwriting of equal members)."""
    assert _take(7, T0, limit=100) == 7
    assert _take(7, T0, limit=100) == 7
    assert _redis().zcard("shaping:rate:p") == 14
    seq = sorted(int(m) for m in _redis().zrange("shaping:rate:p", 0, -1))
    assert all(b == a + 1 for a, b in pairwise(seq))
