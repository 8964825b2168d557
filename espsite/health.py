"""Liveness of the parts the platform needs: PostgreSQL, Redis, the broker, the workers."""

import time

import redis
from django.conf import settings
from django.db import connection
from kombu import Connection

HEARTBEATS_KEY = "esp:worker-heartbeats"
_TIMEOUT_SECONDS = 2


def _redis() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=_TIMEOUT_SECONDS,
        socket_timeout=_TIMEOUT_SECONDS,
    )


def heartbeat_record(*, worker: str, at: float) -> None:
    """Stamp a worker as alive; called by every worker on each Celery heartbeat."""
    _redis().hset(HEARTBEATS_KEY, worker, f"{at:.3f}")


def heartbeat_prune(*, older_than_seconds: int = 24 * 3600) -> int:
    """Forget workers that have been silent for a day (renamed or retired hosts)."""
    client = _redis()
    cutoff = time.time() - older_than_seconds
    stale = [name for name, at in client.hgetall(HEARTBEATS_KEY).items() if float(at) < cutoff]
    if stale:
        client.hdel(HEARTBEATS_KEY, *stale)
    return len(stale)


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def _check_redis() -> dict:
    try:
        _redis().ping()
        return {"ok": True}
    except redis.RedisError as exc:
        return {"ok": False, "error": type(exc).__name__}


def _check_broker() -> dict:
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, timeout=_TIMEOUT_SECONDS)
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}


def _worker_heartbeats(*, now: float) -> dict:
    max_age = settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS
    try:
        stamps = _redis().hgetall(HEARTBEATS_KEY)
    except redis.RedisError as exc:
        return {"ok": False, "error": type(exc).__name__, "workers": []}
    workers = []
    for name, at in sorted(stamps.items()):
        age = max(0.0, now - float(at))
        if age > 24 * 3600:
            continue
        workers.append({"name": name.decode(), "age_s": round(age, 1), "fresh": age <= max_age})
    return {"ok": any(w["fresh"] for w in workers), "workers": workers}


def health_report() -> tuple[bool, dict]:
    """(serving, report): serving is False when a part the web node needs is down.

    Stale or absent workers degrade the report without failing the node: a load
    balancer must not take web nodes out because a worker host is down.
    """
    checks = {
        "database": _check_database(),
        "redis": _check_redis(),
        "broker": _check_broker(),
    }
    checks["workers"] = _worker_heartbeats(now=time.time())
    serving = all(checks[name]["ok"] for name in ("database", "redis", "broker"))
    if not serving:
        status = "down"
    elif not checks["workers"]["ok"]:
        status = "degraded"
    else:
        status = "ok"
    return serving, {"status": status, "checks": checks}
