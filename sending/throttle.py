"""Throttles shared by every worker on every host, kept in Redis: rates over sliding
windows, concurrency slots held as leases, adaptive back-off, daily counters that survive
a Redis restart, and fair shares between campaigns that use one rate.

Each check-and-take is one Lua script (atomic in Redis), registered once per client and
run by EVALSHA (redis-py reloads it after a SCRIPT FLUSH or a restart). Time is Redis's
TIME, one clock for all hosts, unless a test passes `now` (seconds, float). Keys are the
caller's and name what a limit is about ("ip:203.0.113.5:google", "provider:google",
"warmup:ip:203.0.113.5:google"); each kind of throttle keeps them under a prefix of its
own ("shaping:rate:", "shaping:slots:", "shaping:factor:", "shaping:day:<date>:").

Rates: a sliding log (a sorted set of grant times). A grant is refused while `limit`
grants lie in the last window, so no window of that length ever holds more than `limit`
grants, wherever it starts; a fixed-window counter lets 2 * limit through across a
boundary, and the two-counter estimate only approximates. The log also keeps a margin
(5% of the window, at most a second) because receivers count with their own clocks, a
little after each grant: the limit holds as measured by them, not only by Redis. The log
costs one entry per grant in the window, which for per-minute provider limits is small.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from django.conf import settings

from sending.classify import classify

_PREFIX = "shaping:"
_TIMEOUT_SECONDS = 2
_DAY_TTL_SECONDS = 2 * 24 * 3600
_REBUILD_LOCK_MS = 30_000
_REBUILD_WAIT_SECONDS = 2.0
# A reduced rate nobody touched for a day starts again at full speed.
_FACTOR_TTL_MS = 24 * 3600 * 1000
# A campaign keeps its fair share while it asked within this many windows: one that backs
# off for a window after a refusal must not lose its turn.
_ACTIVE_WINDOWS = 2
# The rules of sending/classify.py that mean "slow down": the text says rate, volume or
# reputation, or a 421 comes with a bare 4.7.x (Gmail's and Yahoo's throttles).
_RATE_RULES = {"reputation"}
_RATE_RULES_ON_421 = {"security or policy (code)"}

_NOW = """
local function now_us(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: log, seq, active members, per-member counts, factor.
# ARGV: limit, wanted, window_us, now_us|'', member|'', use factor '1'|'0', mode take|wait,
# windows a member stays active.
# Log entries are "<seq>" or "<seq>|<member>"; the per-member counts follow the log as
# entries are added, purged and returned, so no member needs a key of its own.
_RATE = (
    _NOW
    + """
local log, seq_key, active_key, counts_key, factor_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local limit, wanted, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now, member, mode = now_us(ARGV[4]), ARGV[5], ARGV[7]
if ARGV[6] == '1' then
  local factor = tonumber(redis.call('HGET', factor_key, 'factor') or '1')
  limit = math.max(1, math.floor(limit * factor + 1e-9))
end
local since = now - window
local expired = redis.call('ZRANGEBYSCORE', log, '-inf', since)
if #expired > 0 then
  for _, entry in ipairs(expired) do
    local owner = string.match(entry, '|(.*)$')
    if owner and redis.call('HINCRBY', counts_key, owner, -1) <= 0 then
      redis.call('HDEL', counts_key, owner)
    end
  end
  redis.call('ZREMRANGEBYSCORE', log, '-inf', since)
end
local used = redis.call('ZCARD', log)
local free = limit - used
local granted = math.min(wanted, free)
local mine, share = 0, limit
if member ~= '' then
  -- fair share: each campaign that asked lately may take limit / active campaigns per
  -- window; what the others leave unreserved is free for anyone
  redis.call('ZREMRANGEBYSCORE', active_key, '-inf', now - window * tonumber(ARGV[8]))
  if mode == 'take' then redis.call('ZADD', active_key, now, member) end
  local active = redis.call('ZRANGE', active_key, 0, -1)
  if redis.call('ZSCORE', active_key, member) == false then active[#active + 1] = member end
  share = math.max(1, math.floor(limit / #active))
  local reserved = 0
  for _, other in ipairs(active) do
    local other_used = tonumber(redis.call('HGET', counts_key, other) or '0')
    if other == member then mine = other_used
    else reserved = reserved + math.max(0, share - other_used) end
  end
  granted = math.min(wanted, free, math.max(share - mine, free - reserved))
  redis.call('PEXPIRE', active_key, math.ceil(window * tonumber(ARGV[8]) / 1000) + 1000)
end
if mode == 'wait' then
  if granted > 0 then return 0 end
  local oldest
  if member == '' or mine < share then
    oldest = redis.call('ZRANGE', log, used - limit, used - limit, 'WITHSCORES')[2]
  else
    -- held back by the others' shares: until this member's own oldest grant lapses
    local entries = redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      if string.match(entries[i], '|(.*)$') == member then
        oldest = entries[i + 1]
        break
      end
    end
  end
  if oldest == nil then return window end
  return math.max(1000, tonumber(oldest) + window - now + 1)
end
if granted <= 0 then return {0, 0} end
local last = redis.call('INCRBY', seq_key, granted)
local suffix = ''
if member ~= '' then
  suffix = '|' .. member
  redis.call('HINCRBY', counts_key, member, granted)
end
local args = {}
for i = 1, granted do
  args[#args + 1] = now
  args[#args + 1] = tostring(last - granted + i) .. suffix
  if #args >= 1000 or i == granted then
    redis.call('ZADD', log, unpack(args))
    args = {}
  end
end
local ttl = math.ceil(window / 1000) + 1000
for _, key in ipairs({log, seq_key, counts_key}) do redis.call('PEXPIRE', key, ttl) end
return {granted, last}
"""
)

# KEYS: log, per-member counts. ARGV: count, member|''. Gives back the newest grants (of
# the member, when named).
_RATE_RETURN = """
local log, counts_key, count, member = KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2]
local returned = 0
for _, entry in ipairs(redis.call('ZREVRANGE', log, 0, -1)) do
  if returned >= count then break end
  local owner = string.match(entry, '|(.*)$')
  if member == '' or owner == member then
    redis.call('ZREM', log, entry)
    if owner and redis.call('HINCRBY', counts_key, owner, -1) <= 0 then
      redis.call('HDEL', counts_key, owner)
    end
    returned = returned + 1
  end
end
return returned
"""

# KEYS: slots. ARGV: limit, holder, ttl_us, now_us|''. Leases are holder -> expiry.
# Grants first..last of a log moved to now (XX: returned ones stay gone).
_RATE_RESTAMP = (
    _NOW
    + """
local now = now_us(ARGV[4])
local suffix = ''
if ARGV[3] ~= '' then suffix = '|' .. ARGV[3] end
local moved = 0
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  moved = moved + redis.call('ZADD', KEYS[1], 'XX', 'CH', now, tostring(i) .. suffix)
end
return moved
"""
)


_SLOT_ACQUIRE = (
    _NOW
    + """
local now = now_us(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) == false
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[1], math.ceil((last - now) / 1000) + 1000)
return 1
"""
)

# KEYS: slots. ARGV: holder, ttl_us, now_us|''. A lease that lapsed cannot be renewed.
_SLOT_RENEW = (
    _NOW
    + """
local now = now_us(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[1], math.ceil((last - now) / 1000) + 1000)
return 1
"""
)

# KEYS: factor. ARGV: backoff, min, window_us, now_us|'', ttl_ms. Returns the factor.
_FACTOR_BACKOFF = (
    _NOW
    + """
local now = now_us(ARGV[4])
local factor = tonumber(redis.call('HGET', KEYS[1], 'factor') or '1')
local last = redis.call('HGET', KEYS[1], 'backoff_at')
if last and now - tonumber(last) < tonumber(ARGV[3]) then return tostring(factor) end
factor = math.max(tonumber(ARGV[2]), factor * tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'backoff_at', now, 'step_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return tostring(factor)
"""
)

# KEYS: factor. ARGV: step, window_us, now_us|'', ttl_ms. Returns the factor.
_FACTOR_RECOVER = (
    _NOW
    + """
local now = now_us(ARGV[3])
local factor = redis.call('HGET', KEYS[1], 'factor')
if not factor then return '1' end
factor = tonumber(factor)
if now - tonumber(redis.call('HGET', KEYS[1], 'step_at')) < tonumber(ARGV[2]) then
  return tostring(factor)
end
factor = factor + tonumber(ARGV[1])
if factor >= 1 - 1e-9 then
  redis.call('DEL', KEYS[1])
  return '1'
end
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'step_at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(factor)
"""
)

# KEYS: counter. ARGV: cap, wanted. -1: the counter is not built yet for this Redis.
_DAY_TAKE = """
local used = redis.call('GET', KEYS[1])
if not used then return -1 end
local granted = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - tonumber(used))
if granted <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], granted)
return granted
"""

_DAY_RETURN = """
local used = redis.call('GET', KEYS[1])
if not used then return 0 end
local returned = math.min(tonumber(ARGV[1]), tonumber(used))
if returned > 0 then redis.call('DECRBY', KEYS[1], returned) end
return returned
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class _Scripts:
    rate: redis.commands.core.Script
    rate_return: redis.commands.core.Script
    rate_restamp: redis.commands.core.Script
    slot_acquire: redis.commands.core.Script
    slot_renew: redis.commands.core.Script
    factor_backoff: redis.commands.core.Script
    factor_recover: redis.commands.core.Script
    day_take: redis.commands.core.Script
    day_return: redis.commands.core.Script
    unlock: redis.commands.core.Script


_clients: dict[str, tuple[redis.Redis, _Scripts]] = {}


def _connection() -> tuple[redis.Redis, _Scripts]:
    """One client and its registered scripts per Redis URL (the URL is read each call, so
    that tests and settings overrides take effect)."""
    url = settings.REDIS_URL
    if url not in _clients:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS
        )
        scripts = _Scripts(
            rate=client.register_script(_RATE),
            rate_return=client.register_script(_RATE_RETURN),
            slot_acquire=client.register_script(_SLOT_ACQUIRE),
            slot_renew=client.register_script(_SLOT_RENEW),
            factor_backoff=client.register_script(_FACTOR_BACKOFF),
            factor_recover=client.register_script(_FACTOR_RECOVER),
            rate_restamp=client.register_script(_RATE_RESTAMP),
            day_take=client.register_script(_DAY_TAKE),
            day_return=client.register_script(_DAY_RETURN),
            unlock=client.register_script(_UNLOCK),
        )
        _clients[url] = (client, scripts)
    return _clients[url]


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _now_arg(now: float | None) -> str:
    return "" if now is None else str(_us(now))


def _window(window_seconds: float | None) -> float:
    return settings.THROTTLE_WINDOW_SECONDS if window_seconds is None else window_seconds


def rate_margin_seconds(*, window_seconds: float) -> float:
    """What a grant occupies beyond its window: room for the receiver's later clock."""
    return min(window_seconds * 0.05, 1.0)


# --- rates -----------------------------------------------------------------------------


def _rate_call(
    *,
    mode: str,
    key: str,
    limit: int,
    wanted: int,
    window_seconds: float | None,
    now: float | None,
    factor_key: str | None,
    member: str | None,
) -> int:
    if "|" in (member or ""):
        raise ValueError("A fairness member cannot contain '|'.")
    window = _window(window_seconds)
    window_us = _us(window + rate_margin_seconds(window_seconds=window))
    client, scripts = _connection()
    base = f"{_PREFIX}rate:{key}"
    return scripts.rate(
        keys=[
            base,
            f"{base}:seq",
            f"{base}:active",
            f"{base}:members",
            f"{_PREFIX}factor:{factor_key or ''}",
        ],
        args=[
            limit,
            wanted,
            window_us,
            _now_arg(now),
            member or "",
            "1" if factor_key else "0",
            mode,
            _ACTIVE_WINDOWS,
        ],
        client=client,
    )


def rate_take(
    *,
    key: str,
    limit: int,
    wanted: int,
    window_seconds: float | None = None,
    now: float | None = None,
    factor_key: str | None = None,
    member: str | None = None,
) -> int:
    """Take up to `wanted` of `limit` grants per window (THROTTLE_WINDOW_SECONDS); how many.

    With `factor_key` the limit is first scaled by that key's back-off factor (see
    rate_factor), in the same atomic step. With `member` (a campaign id) the grants are
    shared fairly: each member that asked within the last two windows may take
    limit / active members per window, and may take more only out of what the other
    active members have left unreserved, so a campaign of a million cannot starve one
    of a thousand, and a lone campaign still gets the whole rate.
    """
    return rate_take_entries(
        key=key,
        limit=limit,
        wanted=wanted,
        window_seconds=window_seconds,
        now=now,
        factor_key=factor_key,
        member=member,
    )[0]


def rate_take_entries(
    *,
    key: str,
    limit: int,
    wanted: int,
    window_seconds: float | None = None,
    now: float | None = None,
    factor_key: str | None = None,
    member: str | None = None,
) -> tuple[int, int]:
    """rate_take, and the sequence number of the last log entry granted (for restamping)."""
    if wanted <= 0 or limit <= 0:
        return 0, 0
    granted, last = _rate_call(
        mode="take",
        key=key,
        limit=limit,
        wanted=wanted,
        window_seconds=window_seconds,
        now=now,
        factor_key=factor_key,
        member=member,
    )
    return int(granted), int(last)


def rate_restamp(
    *, key: str, first: int, last: int, member: str | None = None, now: float | None = None
) -> int:
    """Move grants first..last to now: a grant counts from when its message was handed
    over, not from when the chunk was claimed."""
    if last < first:
        return 0
    client, scripts = _connection()
    return int(
        scripts.rate_restamp(
            keys=[f"{_PREFIX}rate:{key}"],
            args=[first, last, member or "", _now_arg(now)],
            client=client,
        )
    )


def rate_wait_seconds(
    *,
    key: str,
    limit: int,
    window_seconds: float | None = None,
    now: float | None = None,
    factor_key: str | None = None,
    member: str | None = None,
) -> float:
    """How long until rate_take with the same arguments can grant one (0: now); for back-off."""
    if limit <= 0:
        return _window(window_seconds)
    waited = int(
        _rate_call(
            mode="wait",
            key=key,
            limit=limit,
            wanted=1,
            window_seconds=window_seconds,
            now=now,
            factor_key=factor_key,
            member=member,
        )
    )
    return waited / 1_000_000


def rate_return(*, key: str, count: int, member: str | None = None) -> int:
    """Give back grants that went unused (another limit allowed fewer); how many."""
    if count <= 0:
        return 0
    client, scripts = _connection()
    base = f"{_PREFIX}rate:{key}"
    return int(
        scripts.rate_return(
            keys=[base, f"{base}:members"], args=[count, member or ""], client=client
        )
    )


# --- adaptive back-off -------------------------------------------------------------------


def reply_is_rate_limited(*, code: int | None, enhanced: str = "", text: str = "") -> bool:
    """A deferral that asks us to slow down (421, 4.7.x with rate, volume or reputation
    words, Yahoo's TSS04), as opposed to greylisting, a full mailbox or a busy server."""
    result = classify(code=code, enhanced=enhanced, text=text)
    if result.state != "deferred":
        return False
    return result.rule in _RATE_RULES or (code == 421 and result.rule in _RATE_RULES_ON_421)


def rate_factor(*, key: str) -> float:
    """The share of its full rate a provider or IP gets now (1.0 unless it backed off)."""
    client, _ = _connection()
    factor = client.hget(f"{_PREFIX}factor:{key}", "factor")
    return float(factor) if factor is not None else 1.0


def rate_limit_effective(*, key: str, limit: int) -> int:
    """floor(limit * factor), at least 1: the limit to pass on while backing off."""
    return max(1, math.floor(limit * rate_factor(key=key) + 1e-9))


def rate_backoff(
    *, key: str, window_seconds: float | None = None, now: float | None = None
) -> float:
    """Slow `key` down after a rate-limit reply: factor * THROTTLE_BACKOFF_FACTOR, not below
    THROTTLE_MIN_FACTOR. Once per window: a burst of 421s from one slowdown halves once."""
    client, scripts = _connection()
    return float(
        scripts.factor_backoff(
            keys=[f"{_PREFIX}factor:{key}"],
            args=[
                settings.THROTTLE_BACKOFF_FACTOR,
                settings.THROTTLE_MIN_FACTOR,
                _us(_window(window_seconds)),
                _now_arg(now),
                _FACTOR_TTL_MS,
            ],
            client=client,
        )
    )


def rate_recover(
    *, key: str, window_seconds: float | None = None, now: float | None = None
) -> float:
    """Speed `key` up by THROTTLE_RECOVERY_STEP after a clean window (no back-off nor
    step in the last window), up to 1.0; call it after sends that went through."""
    client, scripts = _connection()
    return float(
        scripts.factor_recover(
            keys=[f"{_PREFIX}factor:{key}"],
            args=[
                settings.THROTTLE_RECOVERY_STEP,
                _us(_window(window_seconds)),
                _now_arg(now),
                _FACTOR_TTL_MS,
            ],
            client=client,
        )
    )


# --- concurrency slots ---------------------------------------------------------------------


def _slot_ttl(ttl: float | None) -> int:
    return _us(settings.THROTTLE_SLOT_SECONDS if ttl is None else ttl)


def slot_acquire(
    *, key: str, limit: int, holder: str, ttl: float | None = None, now: float | None = None
) -> bool:
    """Lease one of `limit` slots for `ttl` seconds (THROTTLE_SLOT_SECONDS); True if held.

    A holder that already holds one renews it. A holder that dies frees its slot when the
    lease lapses; one that lives renews it (slot_renew) well within the ttl.
    """
    if limit <= 0:
        return False
    client, scripts = _connection()
    return bool(
        scripts.slot_acquire(
            keys=[f"{_PREFIX}slots:{key}"],
            args=[limit, holder, _slot_ttl(ttl), _now_arg(now)],
            client=client,
        )
    )


def slot_renew(
    *, key: str, holder: str, ttl: float | None = None, now: float | None = None
) -> bool:
    """Extend a lease; False when it already lapsed (the slot may be someone else's now)."""
    client, scripts = _connection()
    return bool(
        scripts.slot_renew(
            keys=[f"{_PREFIX}slots:{key}"],
            args=[holder, _slot_ttl(ttl), _now_arg(now)],
            client=client,
        )
    )


def slot_release(*, key: str, holder: str) -> None:
    client, _ = _connection()
    client.zrem(f"{_PREFIX}slots:{key}", holder)


def slots_acquire(
    *, key: str, limit: int, holders: list[str], ttl: float | None = None, now: float | None = None
) -> list[str]:
    """slot_acquire for several holders in one round trip; the holders that got a slot."""
    if limit <= 0 or not holders:
        return []
    client, scripts = _connection()
    pipe = client.pipeline(transaction=False)
    for holder in holders:
        scripts.slot_acquire(
            keys=[f"{_PREFIX}slots:{key}"],
            args=[limit, holder, _slot_ttl(ttl), _now_arg(now)],
            client=pipe,
        )
    return [holder for holder, held in zip(holders, pipe.execute(), strict=True) if held]


def slots_release(*, key: str, holders: list[str]) -> None:
    if holders:
        client, _ = _connection()
        client.zrem(f"{_PREFIX}slots:{key}", *holders)


def slot_count(*, key: str, now: float | None = None) -> int:
    """Leases held and not lapsed (for operator views)."""
    client, _ = _connection()
    at = _us(now) if now is not None else _us(time.time())
    return int(client.zcount(f"{_PREFIX}slots:{key}", f"({at}", "+inf"))


# --- daily counters ----------------------------------------------------------------------

DayCountSource = Callable[[str, dt.date], int]


def _day_key(key: str, day: dt.date) -> str:
    return f"{_PREFIX}day:{day.isoformat()}:{key}"


def _day_count_build(*, key: str, day: dt.date, count_of: DayCountSource) -> bool:
    """Make sure the counter of (key, day) exists; False if another process is still
    building it after _REBUILD_WAIT_SECONDS."""
    client, scripts = _connection()
    counter = _day_key(key, day)
    if client.exists(counter):
        return True
    lock, token = f"{counter}:rebuild", uuid.uuid4().hex
    if client.set(lock, token, nx=True, px=_REBUILD_LOCK_MS):
        try:
            if not client.exists(counter):
                count = count_of(key, day)
                client.set(counter, count, nx=True, ex=_DAY_TTL_SECONDS)
        finally:
            scripts.unlock(keys=[lock], args=[token], client=client)
        return True
    deadline = time.monotonic() + _REBUILD_WAIT_SECONDS
    while time.monotonic() < deadline:
        if client.exists(counter):
            return True
        time.sleep(0.02)
    return False


def day_counts_rebuild(
    *, keys: Iterable[str], day: dt.date, count_of: DayCountSource
) -> dict[str, int]:
    """Counters of `day` that this Redis lacks (a new day, a new key, or a restart that
    kept nothing) start from `count_of(key, day)`, read from the Delivery rows.

    A counter's own absence is the sentinel: one per (key, day), built once under a lock
    (SET NX with expiry) so that two processes never count the rows twice; the others
    wait for it. Grants taken but not yet visible in the rows when Redis restarted are
    the only ones that can be missed.
    """
    client, _ = _connection()
    counts = {}
    for key in keys:
        _day_count_build(key=key, day=day, count_of=count_of)
        value = client.get(_day_key(key, day))
        counts[key] = int(value) if value is not None else 0
    return counts


def day_count_take(
    *, key: str, cap: int, wanted: int, day: dt.date, count_of: DayCountSource
) -> int:
    """Take up to `wanted` of `cap` per `day` for `key`; how many (0: wait for tomorrow,
    or for another process to finish rebuilding). Counters expire after two days."""
    if wanted <= 0 or cap <= 0:
        return 0
    client, scripts = _connection()
    counter = _day_key(key, day)
    for _ in range(2):
        granted = int(scripts.day_take(keys=[counter], args=[cap, wanted], client=client))
        if granted >= 0:
            return granted
        if not _day_count_build(key=key, day=day, count_of=count_of):
            return 0
    return 0


def day_count_get(*, key: str, day: dt.date) -> int | None:
    """Today's count for "X of Y today"; None when this Redis has not built it."""
    client, _ = _connection()
    value = client.get(_day_key(key, day))
    return int(value) if value is not None else None


def day_count_return(*, key: str, day: dt.date, count: int) -> int:
    """Give back grants that went unused; how many."""
    if count <= 0:
        return 0
    client, scripts = _connection()
    return int(scripts.day_return(keys=[_day_key(key, day)], args=[count], client=client))
