"""Fixtures shared by the tracking tests."""

import pytest
from django.db import connection


def _heal() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS tracking_test_fail ON tracking_pendinghit")
        cursor.execute("DROP FUNCTION IF EXISTS tracking_test_fail()")


@pytest.fixture
def failing_database():
    """A real database error in every insert into the hit buffer, until the function it
    yields heals the database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION tracking_test_fail() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER tracking_test_fail BEFORE INSERT ON tracking_pendinghit "
            "FOR EACH ROW EXECUTE FUNCTION tracking_test_fail()"
        )
    yield _heal
    _heal()
