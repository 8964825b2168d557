"""Benchmark of the contacts table at scale: the real view, through Django's test Client.

Seeds a fresh workspace with --contacts rows by COPY (plus one list that 40 % of them are
subscribed to), then times the first page, a filtered page (list + status) and a search
page, each the median of --runs requests after a warm-up. The baseline is a bare
`SELECT … ORDER BY created_at DESC LIMIT 50` over the same rows, through the same
connection, in the same run. Prints one JSON line. The workspace is deleted at the end
unless --keep; `--cleanup SLUG` deletes a kept one.

    DEBUG=1 .venv/bin/python bench/contact_list.py --contacts 1000000
"""

import argparse
import datetime as dt
import json
import os
import random
import secrets
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Membership, Role, User, Workspace  # noqa: E402
from contacts.models import Contact, ContactList, Subscription  # noqa: E402

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret"]
LAST_NAMES = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Smith",
    "Jones",
    "Garcia",
    "Müller",
    "Rossi",
    "Dubois",
    "Nakamura",
]
DOMAINS = ["example.com", "example.org", "mail.example", "corp.example", "post.example"]
STATUSES = ["active"] * 90 + ["unsubscribed"] * 5 + ["bounced"] * 3 + ["complained"] * 2


def seed(*, count: int) -> tuple[Workspace, User, ContactList]:
    tag = secrets.token_hex(4)
    workspace = Workspace.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}")
    user = User.objects.create_user(email=f"bench-{tag}@example.com", password=None)
    Membership.objects.create(workspace=workspace, user=user, role=Role.OWNER)
    contact_list = ContactList.objects.create(workspace=workspace, name="Newsletter")
    rng = random.Random(42)
    now = timezone.now()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {Contact._meta.db_table} (workspace_id, email, first_name, last_name,"
            " attributes, status, created_at, updated_at) FROM STDIN"
        ) as copy,
    ):
        for n in range(count):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            created = now - dt.timedelta(seconds=rng.randrange(3 * 365 * 86400))
            copy.write_row(
                (
                    workspace.pk,
                    f"{first.lower()}.{n}@{rng.choice(DOMAINS)}",
                    first,
                    last,
                    json.dumps({"plan": rng.choice(["free", "pro"]), "seats": rng.randrange(50)}),
                    rng.choice(STATUSES),
                    created,
                    created,
                )
            )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Subscription._meta.db_table} "  # noqa: S608 - constant table names
            "(workspace_id, contact_id, contact_list_id, status, created_at, subscribed_at) "
            f"SELECT workspace_id, id, %s, 'subscribed', created_at, created_at "
            f"FROM {Contact._meta.db_table} WHERE workspace_id = %s AND id %% 5 < 2",
            [contact_list.pk, workspace.pk],
        )
        cursor.execute(f"ANALYZE {Contact._meta.db_table}")
        cursor.execute(f"ANALYZE {Subscription._meta.db_table}")
    return workspace, user, contact_list


def cleanup(workspace: Workspace) -> None:
    with connection.cursor() as cursor:
        for model in ("contacts_subscription", "contacts_consentrecord", "contacts_contact"):
            cursor.execute(f"DELETE FROM {model} WHERE workspace_id = %s", [workspace.pk])  # noqa: S608
    users = list(User.objects.filter(memberships__workspace=workspace))
    workspace.delete()
    for user in users:
        user.delete()


def median_ms(run, runs: int) -> float:
    run()  # warm-up: connection, template and plan caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def explain(sql_params: tuple[str, list]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql_params[0], sql_params[1])
        return "\n".join(row[0] for row in cursor.fetchall())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the seeded workspace")
    parser.add_argument("--cleanup", metavar="SLUG", help="delete a kept bench workspace")
    parser.add_argument("--verbose", action="store_true", help="print query plans to stderr")
    args = parser.parse_args()

    settings.DEBUG = False  # no query log in memory
    warnings.filterwarnings("ignore", message="No directory at")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if args.cleanup:
        cleanup(Workspace.objects.get(slug=args.cleanup, slug__startswith="bench-"))
        return

    seed_start = time.perf_counter()
    workspace, user, contact_list = seed(count=args.contacts)
    seed_s = time.perf_counter() - seed_start
    try:
        client = Client()
        client.force_login(user)
        url = f"/w/{workspace.slug}/contacts/"

        def get(params=None):
            def run():
                response = client.get(url, params or {})
                assert response.status_code == 200, response.status_code
                return response

            return run

        filtered = {"list": contact_list.pk, "status": "active"}
        search = {"q": "hopper"}
        first_page_ms = median_ms(get(), args.runs)
        filtered_page_ms = median_ms(get(filtered), args.runs)
        search_page_ms = median_ms(get(search), args.runs)
        body = get(filtered)().content.decode()
        assert body.count('name="ids"') == 50, "the filtered page should be full"

        baseline_sql = (
            "SELECT id, email, first_name, last_name, status, created_at "  # noqa: S608
            f"FROM {Contact._meta.db_table} WHERE workspace_id = %s "
            "ORDER BY created_at DESC, id DESC LIMIT 50"
        )

        def baseline():
            with connection.cursor() as cursor:
                cursor.execute(baseline_sql, [workspace.pk])
                cursor.fetchall()

        baseline_ms = median_ms(baseline, args.runs)
        if args.verbose:
            from contacts.selectors import ContactFilters, contact_filter

            for label, params in (("filtered", filtered), ("search", search)):
                queryset = contact_filter(
                    workspace=workspace, filters=ContactFilters.from_dict(params)
                ).order_by("-created_at", "-id")[:51]
                print(f"--- {label} page plan", file=sys.stderr)
                print(explain(queryset.query.sql_with_params()), file=sys.stderr)
        print(
            json.dumps(
                {
                    "contacts": args.contacts,
                    "first_page_ms": first_page_ms,
                    "filtered_page_ms": filtered_page_ms,
                    "search_page_ms": search_page_ms,
                    "baseline_ms": baseline_ms,
                    "runs": args.runs,
                    "seed_s": round(seed_s, 1),
                    "workspace": workspace.slug if args.keep else None,
                }
            )
        )
    finally:
        if not args.keep:
            cleanup(workspace)


if __name__ == "__main__":
    main()
