"""Monthly partitions of the event table: created ahead, dropped after the retention.

One partition a month (`tracking_event_YYYYMM`, UTC months) keeps each index small and
makes retention a DROP TABLE instead of a DELETE of millions of rows. A daily task calls
`event_partitions_ensure()` (this month and TRACKING_PARTITIONS_AHEAD more) and
`event_partitions_expire()` (months wholly older than TRACKING_EVENT_RETENTION_DAYS). The
default partition catches an event no monthly partition covers; the rows it holds for a
month are moved into that month's partition when it is created.
"""

from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.db import connection as default_connection
from django.db import transaction
from django.utils import timezone

_NAME = re.compile(r"^tracking_event_(\d{4})(\d{2})$")


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _bounds(month: dt.date) -> tuple[str, str]:
    return f"{month.isoformat()} 00:00:00+00", f"{_next_month(month).isoformat()} 00:00:00+00"


def event_partitions(*, connection=None) -> list[str]:
    """The monthly partitions that exist, oldest first."""
    connection = connection or default_connection
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'tracking_event'"
        )
        return sorted(name for (name,) in cursor.fetchall() if _NAME.match(name))


def event_partitions_ensure(
    *, today: dt.date | None = None, ahead: int | None = None, connection=None
) -> list[str]:
    """Create the partitions of this month and `ahead` more (TRACKING_PARTITIONS_AHEAD);
    the names created."""
    connection = connection or default_connection
    ahead = settings.TRACKING_PARTITIONS_AHEAD if ahead is None else ahead
    month = _month_start(today or timezone.now().date())
    existing = set(event_partitions(connection=connection))
    created = []
    for _ in range(ahead + 1):
        name = f"tracking_event_{month:%Y%m}"
        if name not in existing:
            _partition_create(connection, name, month)
            created.append(name)
        month = _next_month(month)
    return created


def _partition_create(connection, name: str, month: dt.date) -> None:
    """Create one month's partition, moving the default partition's rows of that month
    into it (attaching a range the default holds rows of would fail)."""
    start, end = _bounds(month)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {name} (LIKE tracking_event INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"WITH moved AS (DELETE FROM tracking_event_default "  # noqa: S608 - our names
            "WHERE occurred_at >= %s AND occurred_at < %s RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved",
            [start, end],
        )
        cursor.execute(
            f"ALTER TABLE tracking_event ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )


def event_partitions_expire(*, today: dt.date | None = None, connection=None) -> list[str]:
    """Drop the monthly partitions whose every day is older than the retention; the names
    dropped. The default partition's old rows are deleted too."""
    connection = connection or default_connection
    today = today or timezone.now().date()
    cutoff = today - dt.timedelta(days=settings.TRACKING_EVENT_RETENTION_DAYS)
    dropped = []
    for name in event_partitions(connection=connection):
        match = _NAME.match(name)
        month = dt.date(int(match.group(1)), int(match.group(2)), 1)
        if _next_month(month) <= cutoff:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"ALTER TABLE tracking_event DETACH PARTITION {name}")
                cursor.execute(f"DROP TABLE {name}")
            dropped.append(name)
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM tracking_event_default WHERE occurred_at < %s",
            [f"{cutoff.isoformat()} 00:00:00+00"],
        )
    return dropped
