"""Traffic shaping at claim time: which lane (destination provider, sending IP) the next
chunk of a campaign goes out on, and how many messages it may carry now.

The pipeline (sending/pipeline.py) first applies the workspace's and the breaker's claim
limits, then asks `lane_grant()` here. A lane's grant is the smallest of

- the provider's rate from that IP (ProviderLimit.messages_per_minute, scaled to
  THROTTLE_WINDOW_SECONDS and slowed by the adaptive back-off after 421/4.7.x replies),
  shared fairly between the campaigns using it (sending/throttle.py);
- connection slots of the provider's max_connections from that IP: one at least, and one
  more per 20 messages up to 10, held while the chunk is handed over and released after
  (leases: a dead worker's slots lapse); the mx transport opens no more sessions to a
  destination than the slots held, and closes each after the provider's messages per
  connection;
- today's warm-up room of a warming IP towards that provider, and of the campaign's
  sending domain while it is new (sending/warmup.py), counted in Redis and rebuilt from
  the Delivery rows when Redis lost them;

and nothing for a provider an operator holds. Lanes are tried in a random order, so that
no provider or IP is always first; the chunk is then claimed from that provider's rows
only (recipients with recent engagement first while warming) and leaves from that IP.
Grants the claim did not use are given back.

A pool whose IPs are bound on other hosts gives this host no lane: its campaigns are sent
by the workers of those hosts (per-host queues, sending/hosts.py). A pool without IPs (a
relay or an ESP API) and a warmed-up domain need no lane: the claim takes any provider.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from sending import throttle, warmup
from sending.hosts import host_name
from sending.models import IpPool, ProviderLimit, SendingDomain, SendingIp
from sending.providers import OTHER
from sending.queue_state import warming_wait_record
from sending.selectors import sending_domain_for_from_address
from sending.transports.base import Result

logger = logging.getLogger(__name__)

_random = random.SystemRandom()
# Warm-up caps need a stats query: read once a minute per (IP or domain, provider, day).
_CAP_CACHE_SECONDS = 60.0
# A grant holds one connection slot per this many messages, up to _SESSIONS_PER_GRANT (the
# mx transport's share of a batch per session and its sessions per destination).
_MESSAGES_A_SESSION_SHARE = 20
_SESSIONS_PER_GRANT = 10
# A wait longer than this is not worth a task waiting in the broker: the chain ends and
# the sweep sets workers going again later (warm-up caps, held providers).
LONG_WAIT_SECONDS = 30.0


def shaping_now() -> dt.datetime:
    """The clock of warm-up days; tests replace it to walk through days."""
    return timezone.now()


# --- what the lanes are made of (cached per process for a couple of seconds) -----------


class _Cache:
    def __init__(self) -> None:
        self.values: dict[tuple, tuple[float, object]] = {}

    def get(self, key: tuple, ttl: float, load: Callable[[], object]):
        now = time.monotonic()
        hit = self.values.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        self.values[key] = (now + ttl, value)
        return value

    def clear(self) -> None:
        self.values.clear()


_cache = _Cache()


def shaping_cache_clear() -> None:
    _cache.clear()


def _ttl() -> float:
    return settings.SENDING_POLICY_CACHE_SECONDS


def provider_limits() -> dict[str, ProviderLimit]:
    def load() -> dict[str, ProviderLimit]:
        return {limit.provider: limit for limit in ProviderLimit.objects.all()}

    return _cache.get(("limits",), _ttl(), load)


def _limit_of(provider: str) -> ProviderLimit:
    limits = provider_limits()
    return limits.get(provider) or limits.get(OTHER) or ProviderLimit(provider=provider)


@dataclass(frozen=True)
class PoolIps:
    has_ips: bool  # the pool has sending IPs in service on some host
    here: list[SendingIp]  # those this host may send from


def pool_ips(pool_id: int | None) -> PoolIps:
    """The pool's IPs in service (warming or active), and those bound on this host (a
    blank bound_host: a loopback address every host has)."""

    def load() -> PoolIps:
        if pool_id is None:
            return PoolIps(has_ips=False, here=[])
        ips = list(
            SendingIp.objects.filter(pool_id=pool_id, is_active=True)
            .exclude(state=SendingIp.State.PAUSED)
            .select_related("pool__warmup_schedule")
        )
        here = [ip for ip in ips if ip.bound_host in ("", host_name())]
        return PoolIps(has_ips=bool(ips), here=here)

    return _cache.get(("pool", pool_id, host_name()), _ttl(), load)


def send_hosts(pool: IpPool | None) -> list[str]:
    """The hosts whose workers send a pool's mail ("" : any host, the shared queue)."""
    if pool is None:
        return [""]
    hosts = set(
        SendingIp.objects.filter(pool=pool, is_active=True)
        .exclude(state=SendingIp.State.PAUSED)
        .values_list("bound_host", flat=True)
    )
    return sorted(hosts) or [""]


def warming_domain(campaign: Campaign) -> SendingDomain | None:
    """The campaign's sending domain while it is new (warming up), else None."""
    if not settings.WARMUP_NEW_DOMAINS:
        return None

    def load() -> SendingDomain | None:
        domain = sending_domain_for_from_address(
            workspace=campaign.workspace, address=campaign.from_email
        )
        return domain if domain is not None and not domain.is_warmed_up else None

    return _cache.get(("domain", campaign.pk, campaign.from_email), _ttl(), load)


def _cap(target: SendingIp | SendingDomain, provider: str, today: dt.date) -> int | None:
    key = ("cap", type(target).__name__, target.pk, provider, today)
    return _cache.get(
        key,
        _CAP_CACHE_SECONDS,
        lambda: warmup.cap_today(ip_or_domain_state=target, provider=provider, today=today),
    )


def claimable_providers(campaign_id: int) -> list[str]:
    """The providers of a campaign's queued rows and of its due deferred rows.

    The queued ones by a loose index scan of (campaign, provider, id) on queued rows: one
    index probe per provider, however many rows wait.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH RECURSIVE p(provider) AS ("
            " (SELECT provider FROM sending_delivery WHERE campaign_id = %s"
            "  AND state = 'queued' ORDER BY provider LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT d.provider FROM sending_delivery d WHERE d.campaign_id = %s"
            "  AND d.state = 'queued' AND d.provider > p.provider ORDER BY d.provider LIMIT 1)"
            " FROM p WHERE p.provider IS NOT NULL) "
            "SELECT provider FROM p WHERE provider IS NOT NULL "
            "UNION SELECT DISTINCT provider FROM sending_delivery WHERE campaign_id = %s"
            " AND state = 'deferred' AND next_attempt_at <= clock_timestamp()",
            [campaign_id, campaign_id, campaign_id],
        )
        return [row[0] for row in cursor.fetchall()]


# --- grants ------------------------------------------------------------------------------


def _rate_key(address: str, provider: str) -> str:
    return f"ip:{address}:{provider}"


def _per_window(messages_per_minute: int) -> int:
    return max(1, round(messages_per_minute * settings.THROTTLE_WINDOW_SECONDS / 60))


def _day_count_of_ip(address: str) -> throttle.DayCountSource:
    def count(key: str, day: dt.date) -> int:
        provider = key.rsplit(":", 1)[1]
        stats = warmup.warmup_stats(source_ip=address, provider=provider, days=0, today=day)
        return stats[day].attempted if day in stats else 0

    return count


def _day_count_of_domain(domain: SendingDomain) -> throttle.DayCountSource:
    def count(key: str, day: dt.date) -> int:
        provider = key.rsplit(":", 1)[1]
        stats = warmup.warmup_stats(domain=domain, provider=provider, days=0, today=day)
        return stats[day].attempted if day in stats else 0

    return count


@dataclass
class Grant:
    """Room for `count` messages of one campaign: towards `provider` (None: any) from
    `source_ip` (None: the transport's choice)."""

    count: int
    provider: str | None = None
    source_ip: str | None = None
    engaged_first: bool = False
    rate_key: str | None = None
    rate_entries: tuple[str, str, int, int] | None = None  # (key, member, first, last)
    slots: list[tuple[str, str]] = field(default_factory=list)  # (key, holder) leases
    messages_per_session: int = 0  # the provider's messages per connection (0: any)
    _returns: list[Callable[[int], object]] = field(default_factory=list)

    def give_back(self, unused: int) -> None:
        """Return what the claim did not use to every counter it was taken from."""
        if unused <= 0:
            return
        for give in self._returns:
            give(unused)
        self.count -= unused


@dataclass(frozen=True)
class Refusal:
    """Why no lane had room, and when to look again (seconds)."""

    reason: str
    wait_seconds: float


def _take_rate(grant: Grant, address: str, provider: str, campaign_id: int) -> float | None:
    """Take the lane's rate and a connection slot; None when granted, else the wait."""
    limit = _limit_of(provider)
    key = _rate_key(address, provider)
    holder = uuid.uuid4().hex
    if not throttle.slot_acquire(key=key, limit=limit.max_connections, holder=holder):
        return 1.0
    per_window = _per_window(limit.messages_per_minute)
    member = str(campaign_id)
    taken, last = throttle.rate_take_entries(
        key=key, limit=per_window, wanted=grant.count, factor_key=key, member=member
    )
    grant.rate_entries = (key, member, last - taken + 1, last)
    if not taken:
        throttle.slot_release(key=key, holder=holder)
        return (
            throttle.rate_wait_seconds(key=key, limit=per_window, factor_key=key, member=member)
            or 0.2
        )
    grant.count = taken
    grant.rate_key = key
    grant.slots.append((key, holder))
    grant.messages_per_session = limit.messages_per_connection
    grant._returns.append(lambda n: throttle.rate_return(key=key, count=n, member=member))
    # More sessions for a bigger grant, as far as the provider's connection limit allows
    # (the transport opens one per slot held, at most).
    wanted_sessions = min(math.ceil(taken / _MESSAGES_A_SESSION_SHARE), _SESSIONS_PER_GRANT)
    more = [uuid.uuid4().hex for _ in range(wanted_sessions - 1)]
    for extra in throttle.slots_acquire(key=key, limit=limit.max_connections, holders=more):
        grant.slots.append((key, extra))
    return None


def _take_day(grant: Grant, *, key: str, cap: int, day: dt.date, count_of) -> bool:
    taken = throttle.day_count_take(
        key=key, cap=cap, wanted=grant.count, day=day, count_of=count_of
    )
    if taken < grant.count:
        grant.give_back(grant.count - taken)
    if not taken:
        return False
    grant._returns.append(lambda n: throttle.day_count_return(key=key, day=day, count=n))
    return True


def _lane(
    *,
    campaign: Campaign,
    provider: str,
    ip: SendingIp | None,
    domain: SendingDomain | None,
    wanted: int,
    today: dt.date,
) -> Grant | Refusal:
    grant = Grant(count=wanted, provider=provider, source_ip=ip.address if ip else None)
    if ip is not None:
        wait = _take_rate(grant, ip.address, provider, campaign.pk)
        if wait is not None:
            return Refusal("rate", wait)
        cap = _cap(ip, provider, today)
        if cap is not None:
            if ip.warmup_started_on is None:
                warmup.warmup_mark_started(ip_or_domain=ip, today=today)
            grant.engaged_first = True
            key = f"warmup:ip:{ip.address}:{provider}"
            if not _take_day(
                grant, key=key, cap=cap, day=today, count_of=_day_count_of_ip(ip.address)
            ):
                grant_release(grant)
                return Refusal("warming", LONG_WAIT_SECONDS * 2)
    if domain is not None:
        cap = _cap(domain, provider, today)
        if cap is not None:
            if domain.warmup_started_on is None:
                warmup.warmup_mark_started(ip_or_domain=domain, today=today)
            grant.engaged_first = True
            key = f"warmup:domain:{domain.pk}:{provider}"
            if not _take_day(
                grant, key=key, cap=cap, day=today, count_of=_day_count_of_domain(domain)
            ):
                grant_release(grant)
                return Refusal("warming", LONG_WAIT_SECONDS * 2)
    return grant


def lane_grant(*, campaign: Campaign, pool: IpPool | None, wanted: int) -> Grant | Refusal:
    """Room for up to `wanted` messages of `campaign` on one lane, or why there is none."""
    ips = pool_ips(pool.pk if pool is not None else None)
    if ips.has_ips and not ips.here:
        # Not this host's mail: the chain ends; the workers of the pool's hosts send it.
        return Refusal("other host", LONG_WAIT_SECONDS * 2)
    domain = warming_domain(campaign)
    held = {p for p, limit in provider_limits().items() if limit.is_held}
    if not ips.has_ips and domain is None and not held:
        return Grant(count=wanted)
    today = timezone.localdate(shaping_now())
    providers = claimable_providers(campaign.pk)
    _random.shuffle(providers)
    refusals: list[Refusal] = []
    try:
        for provider in providers:
            if provider in held:
                refusals.append(Refusal("held", LONG_WAIT_SECONDS * 2))
                continue
            lanes: Sequence[SendingIp | None] = _random.sample(ips.here, len(ips.here)) or [None]
            warming = False
            for ip in lanes:
                found = _lane(
                    campaign=campaign, provider=provider, ip=ip, domain=domain,
                    wanted=wanted, today=today,
                )  # fmt: skip
                if isinstance(found, Grant):
                    return found
                refusals.append(found)
                warming = warming or found.reason == "warming"
            if warming:
                warming_wait_record(provider=provider, campaign_id=campaign.pk, day=today)
    except redis.RedisError as error:
        # Without the shared counters no limit can be honoured: send nothing for now.
        logger.warning("Shaping counters unavailable, campaign %s waits: %s", campaign.pk, error)
        return Refusal("counters unavailable", 1.0)
    if not refusals:
        return Refusal("nothing claimable", 0.0)
    return min(refusals, key=lambda refusal: refusal.wait_seconds)


def grant_release(grant: Grant) -> None:
    """Free the grant's concurrency slots (after the hand-over, or when unused)."""
    slots, grant.slots = grant.slots, []
    by_key: dict[str, list[str]] = {}
    for key, holder in slots:
        by_key.setdefault(key, []).append(holder)
    for key, holders in by_key.items():
        with contextlib.suppress(redis.RedisError):  # else the leases lapse by themselves
            throttle.slots_release(key=key, holders=holders)


def grant_finish(grant: Grant, results: Sequence[Result]) -> None:
    """After the hand-over: free the slot, and slow the lane down when the provider said
    so (421, 4.7.x about rate or reputation) or let it recover after clean sends."""
    grant_release(grant)
    if grant.rate_key is None:
        return
    try:
        if grant.rate_entries is not None:
            key, member, first, last = grant.rate_entries
            throttle.rate_restamp(key=key, first=first, last=last, member=member)
        if any(
            result.state == "deferred"
            and throttle.reply_is_rate_limited(
                code=result.smtp_code, enhanced=result.enhanced_code, text=result.response
            )
            for result in results
        ):
            factor = throttle.rate_backoff(key=grant.rate_key)
            logger.info("Slowing %s down to %.0f%% of its rate", grant.rate_key, factor * 100)
        elif any(result.state == "sent" for result in results):
            throttle.rate_recover(key=grant.rate_key)
    except redis.RedisError as error:
        logger.warning("Back-off of %s not recorded: %s", grant.rate_key, error)


# --- send chains ---------------------------------------------------------------------------


def _chain_key(campaign_id: int) -> str:
    return f"shaping:chain:{campaign_id}"


def chain_touch(*, campaign_id: int, seconds: float) -> None:
    """A send chain waits `seconds` for room and will be back: the sweep must not start
    more chains for the campaign meanwhile (its rows look idle while it waits)."""
    try:
        client, _ = throttle._connection()
        client.set(_chain_key(campaign_id), "1", px=max(int(seconds * 1000), 1))
    except redis.RedisError:
        pass  # the sweep may start a spare chain: harmless, claims never overlap


def chain_waiting(*, campaign_id: int) -> bool:
    try:
        client, _ = throttle._connection()
        return bool(client.exists(_chain_key(campaign_id)))
    except redis.RedisError:
        return False
