"""Run-once guards across processes: PostgreSQL session advisory locks."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


@contextmanager
def advisory_lock_try(name: str, number: int = 0) -> Iterator[bool]:
    """Try to take the lock named (name, number) for this connection's session; yields
    whether it was taken (another holder: False, at once) and releases it after."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s), %s)", [name, number])
        (acquired,) = cursor.fetchone()
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtext(%s), %s)", [name, number])
