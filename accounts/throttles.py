"""Sign-in throttling per account and per client IP, kept in Redis so every node shares it."""

import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"login-failures:{kind}:{digest}"


def _keys(*, email: str, ip: str | None) -> dict[str, tuple[str, int]]:
    keys = {"account": (_key("account", email), settings.LOGIN_FAILURES_PER_ACCOUNT)}
    if ip:
        keys["ip"] = (_key("ip", ip), settings.LOGIN_FAILURES_PER_IP)
    return keys


def login_is_throttled(*, email: str, ip: str | None) -> bool:
    """True once the account or the address has used up its failures for the window."""
    keys = _keys(email=email, ip=ip)
    counts = cache.get_many([key for key, _ in keys.values()])
    return any(counts.get(key, 0) >= limit for key, limit in keys.values())


def login_failure_record(*, email: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key, _limit in _keys(email=email, ip=ip).values():
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)


def login_failures_clear(*, email: str) -> None:
    cache.delete(_key("account", email))
