"""Why queued mail waits, as the claim-time shaper (sending/shaping.py) saw it: the
campaigns that a warm-up cap refused today, per destination provider.

The shaper records a refusal on each claim it turns down for a warm-up cap; the operators'
mail queue reads today's sets to tell "waiting for tomorrow's warm-up room" from plain
"queued". Kept in the throttles' Redis, one set of campaign ids per (day, provider) under
shaping:warming:<YYYY-MM-DD>:<provider>, expiring after two days: yesterday's refusals
say nothing about today's room.
"""

from __future__ import annotations

import datetime as dt
import logging

import redis
from django.utils import timezone

from sending import throttle
from sending.models.shaping import PROVIDERS

logger = logging.getLogger(__name__)

_TTL_SECONDS = 2 * 24 * 3600


def _warming_key(day: dt.date, provider: str) -> str:
    return f"shaping:warming:{day.isoformat()}:{provider}"


def warming_wait_record(*, provider: str, campaign_id: int, day: dt.date) -> None:
    """Note that a warm-up cap refused `campaign_id` towards `provider` on `day`."""
    client, _scripts = throttle._connection()
    key = _warming_key(day, provider)
    pipe = client.pipeline(transaction=False)
    pipe.sadd(key, str(campaign_id))
    pipe.expire(key, _TTL_SECONDS)
    pipe.execute()


def warming_waits(*, day: dt.date | None = None) -> dict[str, set[int]]:
    """{provider: ids of the campaigns a warm-up cap refused} of `day` (default today),
    for the providers that have any, in one round trip.

    Empty when Redis does not answer: the pages that show it still load, only without the
    "warming" distinction.
    """
    day = day or timezone.localdate()
    # The known providers, and "" for rows whose provider was never learnt.
    providers = [provider for provider, _label in PROVIDERS] + [""]
    try:
        client, _scripts = throttle._connection()
        pipe = client.pipeline(transaction=False)
        for provider in providers:
            pipe.smembers(_warming_key(day, provider))
        members = pipe.execute()
    except redis.RedisError as error:
        logger.warning("Warm-up waits unavailable: %s", error)
        return {}
    return {
        provider: {int(member) for member in found}
        for provider, found in zip(providers, members, strict=True)
        if found
    }
