"""Contact import throughput against a plain COPY of the same rows, in one run.

    python bench/import_contacts.py --rows 1000000

Generates a CSV, imports it through the real import service (contacts, list subscriptions
and consent records) into a database of its own (esp_bench by default), then COPYs the
same clean rows into the same three tables with psycopg as the baseline. Prints one JSON
line: rows_per_s, baseline_rows_per_s, ratio, peak_rss_mb (the import's peak, measured
before the baseline runs).
"""

import argparse
import csv
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST = ["Ada", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Gustav", "Hana", "Ivo", "Jun"]
LAST = ["Lovelace", "Byte", "Müller", "Ivanov", "Smith", "Khan", "Berg", "Sato", "Novak", "Li"]
CITIES = ["Berlin", "Lisbon", "Osaka", "Lagos", "Lima", "Oslo", "Pune", "Quito"]


def _setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DEBUG", "1")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE contacts_consentrecord, contacts_subscription, contacts_importrejection, "
            "contacts_contactimport_lists, contacts_contactimport, contacts_contact CASCADE"
        )


def _write_csv(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first name", "last name", "city", "age"])
        for n in range(rows):
            writer.writerow(
                [
                    f"person{n}@domain{n % 5000}.example",
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    rng.choice(CITIES),
                    rng.randint(18, 90),
                ]
            )


def _workspace(slug: str):
    from accounts.models import Workspace
    from contacts.models import ContactList, Field

    workspace, _ = Workspace.objects.get_or_create(
        slug=slug, defaults={"name": slug, "status": Workspace.Status.ACTIVE}
    )
    contact_list, _ = ContactList.objects.get_or_create(workspace=workspace, name="Newsletter")
    Field.objects.get_or_create(
        workspace=workspace, key="city", defaults={"label": "City", "type": "text"}
    )
    Field.objects.get_or_create(
        workspace=workspace, key="age", defaults={"label": "Age", "type": "number"}
    )
    return workspace, contact_list


def _run_import(path: Path) -> tuple[float, int]:
    from django.core.files import File

    from accounts.models import User
    from contacts.services.imports import contact_import_start, contact_import_upload

    workspace, contact_list = _workspace("bench-import")
    user, _ = User.objects.get_or_create(email="bench@example.com")
    with path.open("rb") as handle:
        upload = File(handle, name="bench.csv")
        upload.size = path.stat().st_size
        contact_import = contact_import_upload(workspace=workspace, upload=upload, acting_user=user)
    started = time.perf_counter()
    contact_import_start(
        contact_import=contact_import,
        mapping={
            "0": "email",
            "1": "first_name",
            "2": "last_name",
            "3": "attr:city",
            "4": "attr:age",
        },
        list_ids=[contact_list.pk],
        update_existing=True,
        consent_basis="Bench consent",
        consent_source="bench",
        acting_user=user,
    )
    elapsed = time.perf_counter() - started
    contact_import.refresh_from_db()
    assert contact_import.status == "done", contact_import.error
    return elapsed, contact_import.created_count


def _run_baseline(path: Path, rows: int) -> float:
    """COPY the same rows, already clean, into contacts, subscriptions and consent records."""
    from django.db import connection, transaction
    from django.utils import timezone

    workspace, contact_list = _workspace("bench-baseline")
    now = timezone.now()
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        # Reserve ids, so the three COPYs can refer to each other.
        cursor.execute("SELECT nextval('contacts_contact_id_seq')")
        first_id = cursor.fetchone()[0]
        cursor.execute("SELECT setval('contacts_contact_id_seq', %s)", [first_id + rows])
        raw = cursor.cursor
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            with raw.copy(
                "COPY contacts_contact (id, workspace_id, email, first_name, last_name, "
                "attributes, status, created_at, updated_at) FROM STDIN"
            ) as copy:
                for offset, (email, first, last, city, age) in enumerate(reader):
                    attributes = json.dumps({"city": city, "age": int(age)})
                    copy.write_row(
                        (
                            first_id + offset,
                            workspace.pk,
                            email,
                            first,
                            last,
                            attributes,
                            "active",
                            now,
                            now,
                        )
                    )
        with raw.copy(
            "COPY contacts_subscription (workspace_id, contact_id, contact_list_id, status, "
            "created_at, subscribed_at) FROM STDIN"
        ) as copy:
            for offset in range(rows):
                copy.write_row(
                    (workspace.pk, first_id + offset, contact_list.pk, "subscribed", now, now)
                )
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            with raw.copy(
                "COPY contacts_consentrecord (workspace_id, contact_id, contact_list_id, purpose, "
                "action, method, source, campaign_name, email, user_agent, consent_text, "
                "created_at) FROM STDIN"
            ) as copy:
                for offset, row in enumerate(reader):
                    copy.write_row(
                        (
                            workspace.pk,
                            first_id + offset,
                            contact_list.pk,
                            "",
                            "granted",
                            "import",
                            "bench",
                            "",
                            row[0],
                            "",
                            "Bench consent",
                            now,
                        )
                    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp_bench"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the imported rows")
    options = parser.parse_args()

    _setup(options.database_url)
    _truncate()
    with tempfile.TemporaryDirectory() as directory:
        os.environ["MEDIA_ROOT"] = directory
        from django.conf import settings

        settings.STORAGES["default"]["OPTIONS"] = {"location": directory}
        path = Path(directory) / "contacts.csv"
        _write_csv(path, options.rows)
        import_s, created = _run_import(path)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        baseline_s = _run_baseline(path, options.rows)
    if not options.keep:
        _truncate()
    rows_per_s = created / import_s
    baseline_rows_per_s = options.rows / baseline_s
    print(
        json.dumps(
            {
                "rows": options.rows,
                "rows_per_s": round(rows_per_s),
                "baseline_rows_per_s": round(baseline_rows_per_s),
                "ratio": round(rows_per_s / baseline_rows_per_s, 3),
                "peak_rss_mb": round(peak_rss_mb, 1),
                "import_s": round(import_s, 2),
                "baseline_s": round(baseline_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
