"""Rate limits kept in Redis, so that every web node shares them.

Counters are incremented before the guarded work starts: a burst of parallel requests is
counted as it arrives, instead of each request passing the check before any is recorded.
"""

import contextlib
import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"throttle:{kind}:{digest}"


def _hit(key: str, *, window_seconds: int) -> int:
    """Count one more event in the window that started with the first; the new count."""
    cache.add(key, 0, timeout=window_seconds)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window_seconds)
        return 1


def rate_limit_hit(*, kind: str, value: str, limit: int, window_seconds: int) -> bool:
    """Record one event for (kind, value); False once more than `limit` happened in the window."""
    return _hit(_key(kind, value), window_seconds=window_seconds) <= limit


def _login_keys(*, email: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(_key("login-account", email), settings.LOGIN_FAILURES_PER_ACCOUNT)]
    if ip:
        keys.append((_key("login-ip", ip), settings.LOGIN_FAILURES_PER_IP))
    return keys


def login_attempt_begin(*, email: str, ip: str | None) -> bool:
    """Count a sign-in attempt (password or code) before checking it; False when throttled.

    An attempt counts as a failure until login_attempt_succeeded() takes it back.
    """
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    counts = [
        (_hit(key, window_seconds=window), limit) for key, limit in _login_keys(email=email, ip=ip)
    ]
    return all(count <= limit for count, limit in counts)


def login_attempt_succeeded(*, email: str, ip: str | None) -> None:
    """A right password or code: the account starts afresh; the address gets its try back."""
    cache.delete(_key("login-account", email))
    if ip:
        with contextlib.suppress(ValueError):
            cache.decr(_key("login-ip", ip))
