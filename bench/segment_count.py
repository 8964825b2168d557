"""Count a three-condition segment over N contacts through the segment compiler.

    .venv/bin/python bench/segment_count.py --contacts 1000000 [--runs 7] [--verbose] [--keep]

Seeds a database of its own (<database>_bench_segments on the configured server, created
and migrated here, dropped afterwards unless --keep): one workspace, N contacts written
with COPY (typed attributes: a number, a choice, a date; 1% hold a value of the wrong
type), created over the last two years, about 40% on one list and 20% on another with
mixed subscription statuses. Then counts the segment

    score > 50  AND  subscribed to "Newsletter"  AND  added in the last 90 days

`--runs` times through `definition_contacts(...).count()` (compiling included), and the
same count in hand-written SQL (native JSONB comparison, no casts) as the baseline.
Prints one JSON line; --verbose prints the plan (EXPLAIN ANALYZE) of the compiled query to stderr.
Target: median_s <= 1 at 1M contacts.
"""

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _bench_database() -> tuple[str, str]:
    """(conninfo of the server's maintenance database, name of the bench database)."""
    import dj_database_url

    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp")
    config = dj_database_url.parse(url)
    name = f"{config['NAME']}_bench_segments"
    os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
    conninfo = psycopg.conninfo.make_conninfo(
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname="postgres",
    )
    return conninfo, name


def _database_exists(conninfo: str, name: str) -> bool:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()


def _recreate_database(conninfo: str, name: str, *, drop_only: bool = False) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def _seed(count: int, rng: random.Random) -> dict:
    from django.db import connection

    from accounts.models import Workspace
    from contacts.models import Contact, ContactList, Field

    started = time.perf_counter()
    workspace = Workspace.objects.create(
        name="Segment bench", slug="segment-bench", status=Workspace.Status.ACTIVE
    )
    Field.objects.create(workspace=workspace, key="score", label="Score", type="number")
    Field.objects.create(
        workspace=workspace,
        key="plan",
        label="Plan",
        type="choice",
        choices=["free", "pro", "team"],
    )
    Field.objects.create(workspace=workspace, key="renewal", label="Renewal", type="date")
    news = ContactList.objects.create(workspace=workspace, name="Newsletter")
    offers = ContactList.objects.create(workspace=workspace, name="Offers")

    now = dt.datetime.now(dt.UTC)
    two_years = 2 * 365 * 86400
    plans = ["free", "pro", "team"]
    statuses = ["active"] * 95 + ["bounced"] * 2 + ["unsubscribed"] * 3
    columns = (
        "workspace_id, email, first_name, last_name, attributes, status, created_at, updated_at"
    )
    connection.ensure_connection()
    raw = connection.connection  # the psycopg connection under Django's (autocommit)
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY contacts_contact ({columns}) FROM STDIN") as copy:
            for index in range(count):
                created = now - dt.timedelta(seconds=rng.randrange(two_years))
                if rng.random() < 0.01:
                    attributes = {"score": "n/a", "plan": 7, "renewal": "soon"}
                else:
                    renewal = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(1000))
                    attributes = {
                        "score": rng.randrange(101),
                        "plan": rng.choice(plans),
                        "renewal": renewal.isoformat(),
                    }
                copy.write_row(
                    (
                        workspace.pk,
                        f"person{index}@example{index % 997}.org",
                        "Ann",
                        "Example",
                        json.dumps(attributes),
                        rng.choice(statuses),
                        created,
                        created,
                    )
                )
        # Memberships, set-based: ~40% on the newsletter, ~20% on offers, mixed statuses.
        for contact_list, share in ((news, 0.4), (offers, 0.2)):
            cursor.execute(
                """
                INSERT INTO contacts_subscription
                    (workspace_id, contact_id, contact_list_id, status, created_at, subscribed_at)
                SELECT workspace_id, id, %(list)s,
                       CASE WHEN random() < 0.85 THEN 'subscribed'
                            WHEN random() < 0.5 THEN 'pending' ELSE 'unsubscribed' END,
                       created_at, created_at
                FROM contacts_contact
                WHERE workspace_id = %(workspace)s AND random() < %(share)s
                """,
                {"list": contact_list.pk, "workspace": workspace.pk, "share": share},
            )
        cursor.execute("ANALYZE contacts_contact")
        cursor.execute("ANALYZE contacts_subscription")
    assert Contact.objects.filter(workspace=workspace).count() == count
    return {"seed_s": round(time.perf_counter() - started, 2)}


def _definition(news_id: int) -> dict:
    return {
        "op": "and",
        "rules": [
            {"field": "attr:score", "operator": "gt", "value": 50},
            {"field": "list", "operator": "subscribed", "value": news_id},
            {"field": "created_at", "operator": "in_last_days", "value": 90},
        ],
    }


# The same count written by hand, comparing the JSONB value natively (no cast, no guard).
BASELINE_SQL = """
SELECT count(*) FROM contacts_contact c
WHERE c.workspace_id = %(workspace)s
  AND c.attributes -> 'score' > '50'::jsonb
  AND c.created_at >= %(since)s
  AND EXISTS (SELECT 1 FROM contacts_subscription s
              WHERE s.contact_id = c.id AND s.contact_list_id = %(list)s
                AND s.status = 'subscribed')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print the query plan to stderr")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the bench database")
    args = parser.parse_args()

    conninfo, name = _bench_database()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")
    # A developer's run, like `make run`: settings invent the secrets they need.
    os.environ.setdefault("DEBUG", "1")
    reuse = args.keep and _database_exists(conninfo, name)
    if not reuse:
        _recreate_database(conninfo, name)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    from accounts.models import Workspace
    from contacts.models import Contact, ContactList
    from contacts.segments.compiler import definition_contacts

    figures: dict = {}
    try:
        call_command("migrate", verbosity=0)
        workspace = Workspace.objects.filter(slug="segment-bench").first()
        if workspace is not None and Contact.objects.filter(workspace=workspace).count() != (
            args.contacts
        ):
            connections.close_all()
            _recreate_database(conninfo, name)
            call_command("migrate", verbosity=0)
            workspace = None
        if workspace is None:
            figures |= _seed(args.contacts, random.Random(args.seed))
            workspace = Workspace.objects.get(slug="segment-bench")
        news = ContactList.objects.get(workspace=workspace, name="Newsletter")
        definition = _definition(news.pk)

        timings, matched = [], None
        for _ in range(args.runs):
            started = time.perf_counter()
            matched = definition_contacts(workspace=workspace, definition=definition).count()
            timings.append(time.perf_counter() - started)

        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
        baseline, baseline_matched = [], None
        with connection.cursor() as cursor:
            for _ in range(args.runs):
                started = time.perf_counter()
                cursor.execute(
                    BASELINE_SQL, {"workspace": workspace.pk, "since": since, "list": news.pk}
                )
                baseline_matched = cursor.fetchone()[0]
                baseline.append(time.perf_counter() - started)

        if args.verbose:
            query = definition_contacts(workspace=workspace, definition=definition)
            sql, params = query.values("pk").query.sql_with_params()
            with connection.cursor() as cursor:
                explain = f"EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM ({sql}) q"  # noqa: S608
                cursor.execute(explain, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            print(
                f"-- compiled query:\nSELECT count(*) FROM ({sql}) q\n-- params: {params}\n{plan}",
                file=sys.stderr,
            )

        median = statistics.median(timings)
        baseline_median = statistics.median(baseline)
        figures = {
            "median_s": round(median, 4),
            "contacts": args.contacts,
            "matched": matched,
            "baseline_median_s": round(baseline_median, 4),
            "baseline_matched": baseline_matched,
            "ratio": round(baseline_median / median, 3) if median else None,
            "min_s": round(min(timings), 4),
            "max_s": round(max(timings), 4),
            "runs": args.runs,
            "target_median_s": 1.0,
            "meets_target": median <= 1.0,
            **figures,
        }
    finally:
        connections.close_all()
        if not args.keep:
            _recreate_database(conninfo, name, drop_only=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
