"""A campaign report's page time over a million deliveries and ten million events.

    .venv/bin/python bench/report.py [--deliveries 1000000] [--events 10000000]
                                      [--requests 20] [--keep]

Creates a database of its own (esp_bench_report, dropped and recreated, dropped again at
the end unless --keep) and uses Redis database 10 (flushed) as cache. Seeds with
set-based SQL (generate_series): one workspace with a sent A/B campaign (variants A and B
got 10% of the audience each, the rest went to the winner) of --deliveries deliveries
towards five providers (sent 95.5%, bounced 2% by class, skipped 1.5%, outcome unknown
0.5%, retrying 0.3%, failed 0.2%; 0.05% complained; 0.2% unsubscribed), handed over within
two hours, eight days ago; then --events opens and clicks straight into tracking_event:
about 45% of the delivered opened, a few of them very often (a skewed pick), 12% of events
are clicks on 15 links (a few links take most), 35% of opens come from Apple's proxy,
3% from Gmail's, 10% of clicks from link scanners, each delay after sending drawn from an
exponential of eight hours (capped at seven days).

The activity counters are then built from the events by the production helper
(tracking.rollups.activity_counters_rebuild: counters_s), and the roll-ups by the periodic
task's body (tracking.rollups.rollups_refresh: rollup_s). The report page is requested
through the whole stack (Django's test client, a signed-in owner, every middleware):
three warm-up requests, then --requests timed ones.

    median_ms, p95_ms   the report page's time
    queries             its SQL statements (the same for any campaign size)
    rollup_s            rollups_refresh over the seeded campaign and its workspace
    counters_s          the counters rebuilt from the events
    deliveries, events  what was seeded (events: rows in tracking_event)

Prints one JSON line. Target: median_ms < 300 at 1M deliveries and 10M events.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402
    bench_data_drop,
    database_recreate,
    environment_base,
    redis_flush,
    targets_check,
)

EVENT_CHUNK = 1_000_000  # events inserted per statement (one transaction each)
SEND_AGO_DAYS = 8


def _log(message: str) -> None:
    print(f"[bench/report] {message}", file=sys.stderr, flush=True)


def _environment(options: argparse.Namespace) -> None:
    env = environment_base(
        name="report", database_url=options.database_url, redis_url=options.redis_url
    )
    # The test client's host, and plain static storage (no collected manifest here).
    env["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
    env["STATIC_STORAGE_BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"


# --- the data ----------------------------------------------------------------------------


def _seed_objects() -> dict:
    """Workspace, owner, the A/B campaign and its send: the rows the ORM writes."""
    import datetime as dt

    from django.utils import timezone

    from accounts.models import Membership, User, Workspace
    from campaigns.models import AbTest, Campaign, Variant
    from sending.models import CampaignSend

    now = timezone.now()
    sent_at = now - dt.timedelta(days=SEND_AGO_DAYS)
    workspace = Workspace.objects.create(
        name="Report bench",
        slug="report-bench",
        postal_address="1 Harbour Street, Bristol",
        status=Workspace.Status.ACTIVE,
        status_changed_at=now,
    )
    user = User.objects.create_user(email="owner@report-bench.example", password=None)
    Membership.objects.create(workspace=workspace, user=user, role="owner")
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring newsletter",
        subject="The spring news",
        from_email="hello@news.report-bench.example",
        status=Campaign.Status.SENT,
    )
    variants = [
        Variant.objects.create(
            workspace=workspace, campaign=campaign, label=label, subject=f"Spring news {label}"
        )
        for label in ("A", "B")
    ]
    AbTest.objects.create(
        workspace=workspace,
        campaign=campaign,
        test_share_percent=20,
        winner=variants[1],
        decided_at=sent_at + dt.timedelta(hours=4),
    )
    CampaignSend.objects.create(
        workspace=workspace,
        campaign=campaign,
        started_at=sent_at,
        finished_at=sent_at + dt.timedelta(hours=2),
    )
    return {
        "workspace": workspace.pk,
        "campaign": campaign.pk,
        "user": user,
        "variant_a": variants[0].pk,
        "variant_b": variants[1].pk,
        "sent_at": sent_at,
        "now": now,
    }


# r: a fixed pseudo-random 0..9999 per delivery (g), so runs are repeatable.
_DELIVERIES_SQL = """
INSERT INTO sending_delivery (workspace_id, campaign_id, variant_id, contact_id, address,
    state, skip_reason, attempt_count, bounce_class, last_response, message_id, provider,
    created_at, sent_at, bounced_at, complained_at, updated_at)
SELECT %(workspace)s, %(campaign)s,
       CASE g %% 10 WHEN 0 THEN %(variant_a)s WHEN 1 THEN %(variant_b)s END,
       NULL,
       'reader' || g || '@' || CASE
           WHEN p < 45 THEN 'gmail.com' WHEN p < 70 THEN 'outlook.com'
           WHEN p < 82 THEN 'yahoo.com' WHEN p < 90 THEN 'icloud.com'
           ELSE 'mail' || (g %% 97) || '.example' END,
       CASE WHEN r < 9550 THEN 'sent' WHEN r < 9750 THEN 'bounced'
            WHEN r < 9900 THEN 'skipped' WHEN r < 9950 THEN 'unknown'
            WHEN r < 9980 THEN 'deferred' ELSE 'failed' END,
       CASE WHEN r >= 9750 AND r < 9900 THEN 'suppressed' ELSE '' END,
       CASE WHEN r >= 9750 AND r < 9900 THEN 0 ELSE 1 END,
       CASE WHEN r >= 9550 AND r < 9670 THEN 'hard' WHEN r >= 9670 AND r < 9710 THEN 'soft'
            WHEN r >= 9710 AND r < 9740 THEN 'block'
            WHEN r >= 9740 AND r < 9750 THEN 'unknown'
            WHEN r >= 9980 THEN 'soft' ELSE '' END,
       CASE WHEN r >= 9550 AND r < 9750 THEN '550 5.1.1 User unknown' ELSE '' END,
       '<bench.' || g || '@news.report-bench.example>',
       CASE WHEN p < 45 THEN 'google' WHEN p < 70 THEN 'microsoft' WHEN p < 82 THEN 'yahoo'
            WHEN p < 90 THEN 'apple' ELSE 'other' END,
       %(sent_at)s,
       CASE WHEN r < 9550 OR (r >= 9900 AND r < 9950) OR (r >= 9550 AND r < 9670)
            THEN %(sent_at)s + (g::float / %(n)s) * interval '2 hours' END,
       CASE WHEN r >= 9550 AND r < 9670
            THEN %(sent_at)s + (g::float / %(n)s) * interval '2 hours' + interval '5 minutes'
       END,
       CASE WHEN r < 9550 AND (g * 131) %% 2000 = 0
            THEN %(sent_at)s + interval '1 day' END,
       %(sent_at)s + interval '2 hours'
FROM (SELECT g, (g * 7919) %% 10000 AS r, (g * 31) %% 100 AS p
      FROM generate_series(1::bigint, %(n)s::bigint) g) s
"""

_CONSENT_SQL = """
INSERT INTO contacts_consentrecord (workspace_id, contact_id, purpose, action, method, source,
    campaign_id, campaign_name, email, user_agent, consent_text, created_at)
SELECT %(workspace)s, NULL, '', 'withdrawn', 'form', 'unsubscribe link', %(campaign)s,
       'Spring newsletter', '', '', '', %(sent_at)s + interval '1 day'
FROM generate_series(1, %(n)s)
"""

# The openers: a share of the delivered, numbered so that events can pick them skewed.
_OPENERS_SQL = """
CREATE TEMP TABLE bench_openers AS
SELECT row_number() OVER (ORDER BY md5(id::text)) AS rn, id, sent_at
FROM sending_delivery
WHERE campaign_id = %(campaign)s AND state = 'sent' AND (id * 17) %% 100 < 45
"""

_EVENTS_SQL = """
INSERT INTO tracking_event (occurred_at, kind, workspace_id, campaign_id, delivery_id,
    contact_id, url, machine_rule, ip, user_agent, method, event_key)
SELECT at, kind, %(workspace)s, %(campaign)s, o.id, NULL,
       CASE WHEN kind = 'click'
            THEN 'https://shop.example/item/' || floor(power(random(), 2) * 15)::int ELSE '' END,
       CASE WHEN kind = 'open' AND u < 0.35 THEN 'apple_mpp_network'
            WHEN kind = 'open' AND u < 0.38 THEN 'gmail_proxy_prefetch'
            WHEN kind = 'click' AND u < 0.08 THEN 'scanner_user_agent'
            WHEN kind = 'click' AND u < 0.10 THEN 'head_request' ELSE '' END,
       CASE WHEN kind = 'open' AND u < 0.35 THEN ('17.58.' || (g %% 200) || '.1')::inet
            ELSE ('198.51.' || (g %% 250) || '.' || (g %% 200 + 1))::inet END,
       CASE WHEN u < 0.35 THEN 'Mozilla/5.0'
            ELSE 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15' END,
       CASE WHEN kind = 'click' AND u >= 0.08 AND u < 0.10 THEN 'HEAD' ELSE 'GET' END,
       gen_random_uuid()
FROM (
    SELECT g, random() AS u,
           CASE WHEN random() < 0.12 THEN 'click' ELSE 'open' END AS kind,
           1 + floor(power(random(), 3) * %(openers)s)::bigint AS pick,
           least(-ln(1 - random()) * 8, 24 * 7 - 1) * interval '1 hour' AS delay
    FROM generate_series(%(first)s, %(last)s) g
) e
JOIN bench_openers o ON o.rn = e.pick
CROSS JOIN LATERAL (SELECT least(o.sent_at + e.delay, %(now)s) AS at) t
"""


def _seed(options: argparse.Namespace) -> tuple[dict, dict]:
    from django.db import connection, transaction

    timings = {}
    facts = _seed_objects()
    params = facts | {"n": options.deliveries}
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_DELIVERIES_SQL, params)
        cursor.execute(_CONSENT_SQL, params | {"n": options.deliveries // 500})
    timings["deliveries_s"] = round(time.perf_counter() - started, 1)
    _log(f"{options.deliveries:,} deliveries in {timings['deliveries_s']} s")

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sending_delivery")
        cursor.execute(_OPENERS_SQL, params)
        cursor.execute("SELECT count(*) FROM bench_openers")
        (openers,) = cursor.fetchone()
        cursor.execute("ANALYZE bench_openers")
        for first in range(1, options.events + 1, EVENT_CHUNK):
            last = min(first + EVENT_CHUNK - 1, options.events)
            with transaction.atomic():
                cursor.execute(
                    _EVENTS_SQL, params | {"openers": openers, "first": first, "last": last}
                )
            _log(f"events {last:,} of {options.events:,} ({time.perf_counter() - started:.0f} s)")
        cursor.execute("ANALYZE tracking_event")
    timings["events_s"] = round(time.perf_counter() - started, 1)
    return facts, timings


def _count(sql: str, params=()) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# --- the run -----------------------------------------------------------------------------


def _run(options: argparse.Namespace, made: set) -> dict:
    _environment(options)
    _log(f"recreating {options.database_url.rsplit('/', 1)[1]}, flushing {options.redis_url}")
    made.add("database")
    database_recreate(options.database_url)
    redis_flush(options.redis_url)
    import warnings

    import django

    # Static files are not collected for the bench: whitenoise's note about it is noise.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from tracking.rollups import activity_counters_rebuild, rollups_refresh

    call_command("migrate", verbosity=0)
    facts, timings = _seed(options)
    campaign_id = facts["campaign"]

    _log("building the activity counters from the events")
    started = time.perf_counter()
    activity_counters_rebuild(campaign_id=campaign_id)
    counters_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        for table in ("deliveryactivity", "hourlyactivity", "linkactivity", "linkclick"):
            cursor.execute(f"ANALYZE tracking_{table}")
    _log(f"counters in {counters_s:.1f} s; rolling up")

    started = time.perf_counter()
    refreshed = rollups_refresh(now=timezone.now())
    rollup_s = time.perf_counter() - started
    assert refreshed["campaigns"] == 1, refreshed
    _log(f"roll-up in {rollup_s:.1f} s")

    client = Client()
    client.force_login(facts["user"])
    url = reverse(
        "tracking:campaign_report",
        kwargs={"workspace_slug": "report-bench", "campaign_id": campaign_id},
    )
    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200, response.status_code
    times = []
    for _ in range(options.requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    html = response.content.decode()
    assert 'data-chart="opens"' in html, "the report drew no chart"

    events = _count("SELECT count(*) FROM tracking_event WHERE campaign_id = %s", [campaign_id])
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, round(len(times) * 0.95) - 1)], 1),
        "queries": len(queries),
        "rollup_s": round(rollup_s, 2),
        "counters_s": round(counters_s, 1),
        "deliveries": _count(
            "SELECT count(*) FROM sending_delivery WHERE campaign_id = %s", [campaign_id]
        ),
        "events": events,
        "requests": options.requests,
        "event_table_mb": round(
            _count(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                "WHERE inhparent = 'tracking_event'::regclass"
            )
            / 2**20
        ),
        **timings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed page views")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp_bench_report"
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    options = parser.parse_args()
    targets_check(options)

    made: set[str] = set()
    try:
        result = _run(options, made)
    finally:
        bench_data_drop(options, made)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
