"""Roll-ups: a campaign's report figures in one row, and a workspace's days.

A report of a million deliveries must not count a million rows per page view. The roll-up
task (every minute) recomputes the campaigns whose deliveries, feedback, unsubscribes or
opens and clicks changed since their last roll-up, each in a few set-based statements, into
`CampaignRollup`; the page reads that row and the small per-hour and per-link counters.

`activity_counters_rebuild` recomputes a campaign's activity counters from its events: the
ingestion path keeps them as hits arrive, this rebuilds them in bulk (benchmarks seeding
millions of events, a repair after a counter was lost).
"""

from __future__ import annotations

import datetime as dt
import json
import time

from django.db import connection, transaction
from django.utils import timezone

from accounts.locks import advisory_lock_try
from campaigns.models import Campaign, Variant
from tracking.models import CampaignRollup, WorkspaceDay

# Deliveries that reached (or are reaching) a receiving server: the base of delivery and
# bounce rates. Queued, held, claimed, skipped and failed ones never did.
HANDED_OVER_STATES = ("in_flight", "sent", "deferred", "bounced", "unknown")
PENDING_STATES = ("holding", "queued", "claimed", "in_flight")
BOUNCE_CLASSES = ("hard", "soft", "block", "unknown")

# A campaign's figures: the keys of CampaignRollup.counts (by_provider and by_variant hold
# the delivery and activity ones per provider and per variant).
DELIVERY_KEYS = (
    "deliveries",
    "handed_over",
    "delivered",
    "bounced",
    *(f"bounced_{name}" for name in BOUNCE_CLASSES),
    "deferred",
    "failed",
    "outcome_unknown",
    "skipped",
    "pending",
    "complained",
)
UNIQUE_KEYS = ("unique_opens", "unique_human_opens", "unique_clicks", "unique_human_clicks")
TOTAL_KEYS = ("opens", "human_opens", "clicks", "human_clicks")
COUNT_KEYS = (*DELIVERY_KEYS, "unsubscribed", *TOTAL_KEYS, *UNIQUE_KEYS)
DAY_KEYS = ("sent", "delivered", "bounced", "complained", *TOTAL_KEYS, *UNIQUE_KEYS)

# An event's occurred_at precedes its commit by the spool's flush and the drain's turn
# (seconds; more for a dead process's spool adopted late, which ROLLUP_MAX_AGE catches),
# and a roll-up's computed_at is taken before it reads: changes are looked for this far back.
CHANGE_LAG = dt.timedelta(minutes=2)
# Bounce reports may carry a time before they arrived: a finished campaign is recomputed at
# least this often anyway while it is followed.
ROLLUP_MAX_AGE = dt.timedelta(minutes=15)
# How long after its send a campaign's roll-up is kept fresh.
FOLLOW_DAYS = 30
REFRESH_LOCK = "tracking.rollups"  # advisory lock: one refresh at a time


_BOUNCED = "(d.state = 'bounced' OR d.bounced_at IS NOT NULL)"
_DELIVERIES_SQL = f"""
SELECT GROUPING(d.provider) AS by_provider, GROUPING(d.variant_id) AS by_variant,
       d.provider, d.variant_id,
       count(*) AS deliveries,
       count(*) FILTER (WHERE d.state IN {HANDED_OVER_STATES}) AS handed_over,
       count(*) FILTER (WHERE d.state = 'sent') AS delivered,
       count(*) FILTER (WHERE {_BOUNCED}) AS bounced,
       count(*) FILTER (WHERE {_BOUNCED} AND d.bounce_class = 'hard') AS bounced_hard,
       count(*) FILTER (WHERE {_BOUNCED} AND d.bounce_class = 'soft') AS bounced_soft,
       count(*) FILTER (WHERE {_BOUNCED} AND d.bounce_class = 'block') AS bounced_block,
       count(*) FILTER (WHERE {_BOUNCED} AND d.bounce_class IN ('unknown', ''))
           AS bounced_unknown,
       count(*) FILTER (WHERE d.state = 'deferred') AS deferred,
       count(*) FILTER (WHERE d.state = 'failed') AS failed,
       count(*) FILTER (WHERE d.state = 'unknown') AS outcome_unknown,
       count(*) FILTER (WHERE d.state = 'skipped') AS skipped,
       count(*) FILTER (WHERE d.state IN {PENDING_STATES}) AS pending,
       count(*) FILTER (WHERE d.complained_at IS NOT NULL) AS complained,
       coalesce(sum(a.opens), 0) AS opens,
       coalesce(sum(a.human_opens), 0) AS human_opens,
       coalesce(sum(a.clicks), 0) AS clicks,
       coalesce(sum(a.human_clicks), 0) AS human_clicks,
       count(a.first_open_at) AS unique_opens,
       count(a.first_human_open_at) AS unique_human_opens,
       count(a.first_click_at) AS unique_clicks,
       count(a.first_human_click_at) AS unique_human_clicks,
       min(d.sent_at) AS first_sent_at,
       max(d.sent_at) AS last_sent_at
FROM sending_delivery d
LEFT JOIN tracking_deliveryactivity a ON a.delivery_id = d.id AND a.campaign_id = %(campaign)s
WHERE d.campaign_id = %(campaign)s
GROUP BY GROUPING SETS ((), (d.provider), (d.variant_id))
"""  # noqa: S608 (constants only)

# People who withdrew consent through this campaign (its unsubscribe link, List-Unsubscribe,
# a reply): each once, however many lists they left. A complaint also withdraws consent
# naming the campaign; those people are counted as complaints, not again here.
_UNSUBSCRIBED_SQL = """
SELECT count(DISTINCT coalesce(r.contact_id, -r.id))
FROM contacts_consentrecord r
WHERE r.workspace_id = %(workspace)s AND r.campaign_id = %(campaign)s
  AND r.action = 'withdrawn'
  AND NOT EXISTS (
      SELECT 1 FROM sending_delivery d
      WHERE d.campaign_id = %(campaign)s AND d.contact_id = r.contact_id
        AND d.complained_at IS NOT NULL)
"""

# The timeline's sums: the headline totals are the chart's.
_HOURLY_TOTALS_SQL = """
SELECT coalesce(sum(opens), 0), coalesce(sum(human_opens), 0),
       coalesce(sum(clicks), 0), coalesce(sum(human_clicks), 0)
FROM tracking_hourlyactivity WHERE campaign_id = %(campaign)s
"""

# A newer roll-up is never replaced by one that started reading earlier.
_ROLLUP_UPSERT_SQL = """
INSERT INTO tracking_campaignrollup AS r
    (campaign_id, workspace_id, computed_at, counts, by_provider, by_variant)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (campaign_id) DO UPDATE SET
    computed_at = EXCLUDED.computed_at, counts = EXCLUDED.counts,
    by_provider = EXCLUDED.by_provider, by_variant = EXCLUDED.by_variant
WHERE r.computed_at <= EXCLUDED.computed_at
"""


def campaign_rollup_compute(*, campaign_id: int, now: dt.datetime | None = None) -> CampaignRollup:
    """Compute and store a campaign's report figures: totals, per provider, per variant."""
    computed_at = now or timezone.now()
    campaign = Campaign.objects.only("workspace_id").get(pk=campaign_id)
    params = {"campaign": campaign_id, "workspace": campaign.workspace_id}
    variants = {
        variant_id: (label, subject)
        for variant_id, label, subject in Variant.objects.filter(campaign_id=campaign_id)
        .order_by("label")
        .values_list("pk", "label", "subject")
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_DELIVERIES_SQL, params)
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        cursor.execute(_UNSUBSCRIBED_SQL, params)
        (unsubscribed,) = cursor.fetchone()
        cursor.execute(_HOURLY_TOTALS_SQL, params)
        totals = dict(zip(TOTAL_KEYS, cursor.fetchone(), strict=True))

    counts = dict.fromkeys(COUNT_KEYS, 0) | {"first_sent_at": None, "last_sent_at": None}
    by_provider: dict[str, dict] = {}
    by_variant: dict[str, dict] = {}
    for row in rows:
        figures = {key: int(row[key]) for key in (*DELIVERY_KEYS, *TOTAL_KEYS, *UNIQUE_KEYS)}
        if row["by_provider"] and row["by_variant"]:  # the grand total
            counts |= {key: figures[key] for key in (*DELIVERY_KEYS, *UNIQUE_KEYS)}
            counts |= {
                "first_sent_at": _iso(row["first_sent_at"]),
                "last_sent_at": _iso(row["last_sent_at"]),
            }
        elif row["by_variant"]:  # grouped by provider
            by_provider[row["provider"] or ""] = figures
        else:
            variant_id = row["variant_id"]
            label, subject = variants.get(variant_id, ("", ""))
            key = str(variant_id) if variant_id is not None else ""
            by_variant[key] = figures | {"label": label, "subject": subject}
    counts |= totals | {"unsubscribed": int(unsubscribed)}
    if variants:  # variants that got no delivery yet still show, with zeros
        for variant_id, (label, subject) in variants.items():
            by_variant.setdefault(
                str(variant_id),
                dict.fromkeys((*DELIVERY_KEYS, *TOTAL_KEYS, *UNIQUE_KEYS), 0)
                | {"label": label, "subject": subject},
            )
    elif set(by_variant) == {""}:  # no A/B test: the totals say it all
        by_variant = {}

    with connection.cursor() as cursor:
        cursor.execute(
            _ROLLUP_UPSERT_SQL,
            [
                campaign_id,
                campaign.workspace_id,
                computed_at,
                _json(counts),
                _json(by_provider),
                _json(by_variant),
            ],
        )
    return CampaignRollup.objects.get(campaign_id=campaign_id)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


# --- A workspace's days ---------------------------------------------------------------------

# Per UTC day: deliveries handed over (accepted, or refused during the session; as
# sending.selectors.feedback_rates counts them), of which delivered (accepted and not bounced
# since), bounced (when the bounce was recorded; refused at once: when the state changed)
# and complained.
_DAY_DELIVERIES_SQL = """
SELECT day, sum(sent), sum(delivered), sum(bounced), sum(complained) FROM (
    SELECT (sent_at AT TIME ZONE 'UTC')::date AS day, 1 AS sent,
           (state = 'sent')::int AS delivered, 0 AS bounced, 0 AS complained
    FROM sending_delivery WHERE workspace_id = %(workspace)s AND sent_at >= %(start)s
  UNION ALL
    SELECT (updated_at AT TIME ZONE 'UTC')::date, (sent_at IS NULL)::int, 0, 1, 0
    FROM sending_delivery WHERE workspace_id = %(workspace)s AND state = 'bounced'
      AND bounced_at IS NULL AND updated_at >= %(start)s
  UNION ALL
    SELECT (bounced_at AT TIME ZONE 'UTC')::date, 0, 0, 1, 0
    FROM sending_delivery WHERE workspace_id = %(workspace)s AND bounced_at >= %(start)s
  UNION ALL
    SELECT (complained_at AT TIME ZONE 'UTC')::date, 0, 0, 0, 1
    FROM sending_delivery WHERE workspace_id = %(workspace)s AND complained_at >= %(start)s
) facts GROUP BY day
"""

_DAY_ACTIVITY_SQL = """
SELECT (hour AT TIME ZONE 'UTC')::date AS day, sum(opens), sum(human_opens), sum(clicks),
       sum(human_clicks), sum(unique_opens), sum(unique_human_opens), sum(unique_clicks),
       sum(unique_human_clicks)
FROM tracking_hourlyactivity WHERE workspace_id = %(workspace)s AND hour >= %(start)s
GROUP BY 1
"""


def workspace_days_compute(
    *, workspace_id: int, days: int, now: dt.datetime | None = None
) -> list[WorkspaceDay]:
    """Compute and store the workspace's last `days` UTC days (today included): sent,
    delivered, bounced and complained deliveries, opens and clicks (all, human, unique)."""
    computed_at = now or timezone.now()
    today = computed_at.astimezone(dt.UTC).date()
    first = today - dt.timedelta(days=days - 1)
    start = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)
    params = {"workspace": workspace_id, "start": start}
    counts = {first + dt.timedelta(days=n): dict.fromkeys(DAY_KEYS, 0) for n in range(days)}
    with connection.cursor() as cursor:
        cursor.execute(_DAY_DELIVERIES_SQL, params)
        for day, *facts in cursor.fetchall():
            if day in counts:
                counts[day] |= dict(zip(DAY_KEYS[:4], facts, strict=True))
        cursor.execute(_DAY_ACTIVITY_SQL, params)
        for day, *activity in cursor.fetchall():
            if day in counts:
                counts[day] |= dict(zip((*TOTAL_KEYS, *UNIQUE_KEYS), activity, strict=True))
    rows = [
        WorkspaceDay(
            workspace_id=workspace_id,
            day=day,
            counts={key: int(value) for key, value in figures.items()},
            computed_at=computed_at,
        )
        for day, figures in counts.items()
    ]
    WorkspaceDay.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["workspace", "day"],
        update_fields=["counts", "computed_at"],
    )
    return rows


# --- The periodic refresh -------------------------------------------------------------------

# Campaigns followed (sending, or their send started or finished within FOLLOW_DAYS) whose
# figures may have changed since their roll-up: never rolled up; still sending (deliveries
# change); finished since; opens or clicks since; unsubscribes naming them since; bounces,
# complaints or unsubscribes by mail recorded since; or a roll-up older than ROLLUP_MAX_AGE.
_STALE_CAMPAIGNS_SQL = """
SELECT c.id, c.workspace_id
FROM campaigns_campaign c
JOIN sending_campaignsend s ON s.campaign_id = c.id
LEFT JOIN tracking_campaignrollup r ON r.campaign_id = c.id
WHERE c.status IN ('sending', 'paused', 'sent', 'cancelled')
  AND (c.status IN ('sending', 'paused') OR coalesce(s.finished_at, s.started_at) >= %(follow)s)
  AND (
    r.campaign_id IS NULL
    OR c.status IN ('sending', 'paused')
    OR r.computed_at < %(max_age)s
    OR s.finished_at >= r.computed_at - %(lag)s
    OR EXISTS (
        SELECT 1 FROM tracking_event e
        WHERE e.campaign_id = c.id AND e.occurred_at >= r.computed_at - %(lag)s)
    OR EXISTS (
        SELECT 1 FROM contacts_consentrecord k
        WHERE k.created_at >= r.computed_at - %(lag)s AND k.campaign_id = c.id)
    OR EXISTS (
        SELECT 1 FROM sending_feedbackevent f JOIN sending_delivery d ON d.id = f.delivery_id
        WHERE f.workspace_id = c.workspace_id
          AND f.kind IN ('bounce', 'complaint', 'rejected', 'unsubscribe')
          AND f.occurred_at >= r.computed_at - interval '7 days'
          AND f.created_at >= r.computed_at - %(lag)s
          AND d.campaign_id = c.id)
  )
ORDER BY c.id
"""


def rollups_stale(*, now: dt.datetime) -> list[tuple[int, int]]:
    """(campaign id, workspace id) of the followed campaigns whose roll-up is due."""
    with connection.cursor() as cursor:
        cursor.execute(
            _STALE_CAMPAIGNS_SQL,
            {
                "follow": now - dt.timedelta(days=FOLLOW_DAYS),
                "max_age": now - ROLLUP_MAX_AGE,
                "lag": CHANGE_LAG,
            },
        )
        return list(cursor.fetchall())


def rollups_refresh(*, now: dt.datetime) -> dict[str, int]:
    """The roll-up task's body: recompute the due campaigns, then today's and yesterday's
    days of their workspaces. Runs one at a time (a run still going makes the next skip)."""
    with advisory_lock_try(REFRESH_LOCK) as acquired:
        if not acquired:
            return {"campaigns": 0, "workspaces": 0, "skipped": 1}
        started = time.monotonic()

        def clock() -> dt.datetime:  # each roll-up is stamped when it starts reading
            return now + dt.timedelta(seconds=time.monotonic() - started)

        due = rollups_stale(now=now)
        for campaign_id, _ in due:
            campaign_rollup_compute(campaign_id=campaign_id, now=clock())
        workspaces = sorted({workspace_id for _, workspace_id in due})
        for workspace_id in workspaces:
            workspace_days_compute(workspace_id=workspace_id, days=2, now=clock())
    return {"campaigns": len(due), "workspaces": len(workspaces), "skipped": 0}


# --- Counters from events -------------------------------------------------------------------

_URL_HASH = "encode(sha256(convert_to(url, 'UTF8')), 'hex')"
_HUMAN = "machine_rule = ''"
_REBUILD_SQL = [
    "DELETE FROM tracking_linkclick WHERE campaign_id = %(campaign)s",
    "DELETE FROM tracking_linkactivity WHERE campaign_id = %(campaign)s",
    "DELETE FROM tracking_hourlyactivity WHERE campaign_id = %(campaign)s",
    "DELETE FROM tracking_deliveryactivity WHERE campaign_id = %(campaign)s",
    f"""
    WITH per_delivery AS (
        SELECT delivery_id,
               count(*) FILTER (WHERE kind = 'open') AS opens,
               count(*) FILTER (WHERE kind = 'open' AND {_HUMAN}) AS human_opens,
               count(*) FILTER (WHERE kind = 'click') AS clicks,
               count(*) FILTER (WHERE kind = 'click' AND {_HUMAN}) AS human_clicks,
               min(occurred_at) FILTER (WHERE kind = 'open') AS first_open_at,
               min(occurred_at) FILTER (WHERE kind = 'open' AND {_HUMAN}) AS first_human_open_at,
               min(occurred_at) FILTER (WHERE kind = 'click') AS first_click_at,
               min(occurred_at) FILTER (WHERE kind = 'click' AND {_HUMAN})
                   AS first_human_click_at,
               max(occurred_at) AS last_event_at
        FROM tracking_event WHERE campaign_id = %(campaign)s GROUP BY delivery_id
    )
    INSERT INTO tracking_deliveryactivity (delivery_id, workspace_id, campaign_id, variant_id,
        provider, opens, human_opens, clicks, human_clicks, first_open_at, first_human_open_at,
        first_click_at, first_human_click_at, last_event_at)
    SELECT p.delivery_id, d.workspace_id, d.campaign_id, d.variant_id, d.provider, p.opens,
           p.human_opens, p.clicks, p.human_clicks, p.first_open_at, p.first_human_open_at,
           p.first_click_at, p.first_human_click_at, p.last_event_at
    FROM per_delivery p JOIN sending_delivery d ON d.id = p.delivery_id
    """,  # noqa: S608 (constants only)
    # Grouped by URL, then hashed: one hash per link and delivery, not per event.
    f"""
    INSERT INTO tracking_linkclick (workspace_id, delivery_id, campaign_id, url_hash,
        first_click_at, first_human_click_at)
    SELECT workspace_id, delivery_id, campaign_id, {_URL_HASH}, first_click_at,
           first_human_click_at
    FROM (
        SELECT workspace_id, delivery_id, campaign_id, url, min(occurred_at) AS first_click_at,
               min(occurred_at) FILTER (WHERE {_HUMAN}) AS first_human_click_at
        FROM tracking_event WHERE campaign_id = %(campaign)s AND kind = 'click'
        GROUP BY workspace_id, delivery_id, campaign_id, url
    ) per_link
    """,  # noqa: S608 (constants only)
    f"""
    INSERT INTO tracking_linkactivity (workspace_id, campaign_id, url, url_hash, clicks,
        human_clicks, unique_clicks, unique_human_clicks)
    SELECT workspace_id, campaign_id, url, {_URL_HASH}, clicks, human_clicks, unique_clicks,
           unique_human_clicks
    FROM (
        SELECT workspace_id, campaign_id, url, count(*) AS clicks,
               count(*) FILTER (WHERE {_HUMAN}) AS human_clicks,
               count(DISTINCT delivery_id) AS unique_clicks,
               count(DISTINCT delivery_id) FILTER (WHERE {_HUMAN}) AS unique_human_clicks
        FROM tracking_event WHERE campaign_id = %(campaign)s AND kind = 'click'
        GROUP BY workspace_id, campaign_id, url
    ) per_url
    """,  # noqa: S608 (constants only)
    # Unique opens and clicks count in the hour of the delivery's first one.
    f"""
    WITH per_hour AS (
        SELECT date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AS hour,
               count(*) FILTER (WHERE kind = 'open') AS opens,
               count(*) FILTER (WHERE kind = 'open' AND {_HUMAN}) AS human_opens,
               count(*) FILTER (WHERE kind = 'click') AS clicks,
               count(*) FILTER (WHERE kind = 'click' AND {_HUMAN}) AS human_clicks
        FROM tracking_event WHERE campaign_id = %(campaign)s GROUP BY 1
    ),
    firsts AS (
        SELECT hour, sum(o) AS o, sum(ho) AS ho, sum(c) AS c, sum(hc) AS hc FROM (
            SELECT date_trunc('hour', first_open_at AT TIME ZONE 'UTC') AS hour,
                   1 AS o, 0 AS ho, 0 AS c, 0 AS hc
            FROM tracking_deliveryactivity
            WHERE campaign_id = %(campaign)s AND first_open_at IS NOT NULL
          UNION ALL
            SELECT date_trunc('hour', first_human_open_at AT TIME ZONE 'UTC'), 0, 1, 0, 0
            FROM tracking_deliveryactivity
            WHERE campaign_id = %(campaign)s AND first_human_open_at IS NOT NULL
          UNION ALL
            SELECT date_trunc('hour', first_click_at AT TIME ZONE 'UTC'), 0, 0, 1, 0
            FROM tracking_deliveryactivity
            WHERE campaign_id = %(campaign)s AND first_click_at IS NOT NULL
          UNION ALL
            SELECT date_trunc('hour', first_human_click_at AT TIME ZONE 'UTC'), 0, 0, 0, 1
            FROM tracking_deliveryactivity
            WHERE campaign_id = %(campaign)s AND first_human_click_at IS NOT NULL
        ) each_first GROUP BY hour
    )
    INSERT INTO tracking_hourlyactivity (workspace_id, campaign_id, hour, opens, human_opens,
        clicks, human_clicks, unique_opens, unique_human_opens, unique_clicks,
        unique_human_clicks)
    SELECT %(workspace)s, %(campaign)s, p.hour AT TIME ZONE 'UTC', p.opens, p.human_opens,
           p.clicks, p.human_clicks, coalesce(f.o, 0), coalesce(f.ho, 0), coalesce(f.c, 0),
           coalesce(f.hc, 0)
    FROM per_hour p LEFT JOIN firsts f ON f.hour = p.hour
    """,  # noqa: S608 (constants only)
]


@transaction.atomic
def activity_counters_rebuild(*, campaign_id: int) -> None:
    """Recompute a campaign's activity counters (per delivery, hour, link, first click per
    link) from its stored events, replacing what was there. For bulk loads and repairs:
    hits stored for the campaign while it runs would be counted twice or lost, so its
    tracking must be quiet meanwhile."""
    workspace_id = Campaign.objects.values_list("workspace_id", flat=True).get(pk=campaign_id)
    params = {"campaign": campaign_id, "workspace": workspace_id}
    with connection.cursor() as cursor:
        for statement in _REBUILD_SQL:
            cursor.execute(statement, params)
