"""Storing opens and clicks: a durable buffer first, then events and their counters.

The endpoints spool their hits (tracking/spool.py), whose flushers pass what was spooled
to `rows_buffer` every few hundredths of a second: one INSERT of the hits of existing
deliveries into PendingHit. `pending_hits_drain` (a task, every few seconds) takes the
buffered hits in large batches and gives them to `hits_store` in the transaction that
deletes them: a hit is stored exactly once, or stays buffered. So the endpoints' cost
per hit is a line appended to a file, and the events, the counters and the contacts are
written by one process in batches of thousands, without writers racing on the same
counter rows.

`hits_store` costs two statements whatever the batch's size: one read (the deliveries,
with the recent clicks of those clicked), and one write that inserts the events and adds
what was really inserted to every counter table (data-modifying CTEs: one statement, so
a batch is stored whole or not at all, and an event_key written twice is stored once and
counted once). Both go through a server-side-binding cursor, so PostgreSQL prepares them
once per connection.

Unique counts are exact under concurrent writers without reading before writing: the
upsert of a delivery's row returns its counters after the addition, and a counter that
equals this batch's own addition was zero before, so this batch saw the delivery's first
open (or click, human or not). A link's first click per delivery is the LinkClick row the
upsert inserted (xmax = 0), its first human click the row whose empty
first_human_click_at it filled. Every upsert takes its rows in key order, so that writers
in several processes lock rows in the same order and cannot deadlock one another.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import psycopg
from django.conf import settings
from django.db import connection, transaction

from accounts.request_ip import address_parse
from tracking.machine import machine_rule

OPEN, CLICK = "open", "click"
# Deliveries in these states never reached a mail server: nobody can have opened them.
NOT_HANDED_OVER = ("queued", "claimed", "holding", "skipped", "failed")
RECENT_CLICKS = timedelta(minutes=1)
_USER_AGENT_MAX = 300
_METHOD_MAX = 7
# Per delivery: its clicks (time, URL, event key) of the last minute.
_RecentClicks = dict[int, list[tuple[datetime, str, uuid.UUID]]]


@dataclass(frozen=True)
class Hit:
    """One request to the open pixel or a tracked link, as the endpoint saw it."""

    kind: str  # "open" or "click"
    delivery_id: int
    url: str  # a click's target; "" for an open
    occurred_at: datetime
    ip: str | None
    user_agent: str
    method: str
    event_key: uuid.UUID  # given once per request: a hit written twice is stored once


@dataclass(frozen=True)
class _Delivery:
    workspace_id: int
    campaign_id: int
    contact_id: int | None
    variant_id: int | None
    provider: str
    sent_at: datetime | None
    track_opens: bool
    track_clicks: bool


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def _text(value: str | None) -> str:
    return (value or "").replace("\0", "")


_json_string = json.encoder.encode_basestring  # escapes quotes and controls, keeps the rest


def hit_row_json(hit: Hit) -> str:
    """The hit as a row of the buffer, in JSON (what the spool keeps, line by line),
    written out directly: the spool writes one per request, and json.dumps of a dict cost
    twice as much. Its address is one PostgreSQL reads, or null: one bad address must not
    fail the batch, nor a NUL that a text column cannot hold."""
    ip = _ip_clean(hit.ip)
    return (
        f'{{"kind":{_json_string(hit.kind)},"delivery_id":{int(hit.delivery_id)},'
        f'"url":{_json_string(hit.url)},"occurred_at":"{hit.occurred_at.isoformat()}",'
        f'"ip":{"null" if ip is None else _json_string(ip)},'
        f'"user_agent":{_json_string(_text(hit.user_agent)[:_USER_AGENT_MAX])},'
        f'"method":{_json_string((hit.method or "GET").upper()[:_METHOD_MAX])},'
        f'"event_key":"{hit.event_key}"}}'
    )


def hits_buffer(hits: Sequence[Hit]) -> frozenset[int]:
    """Buffer the hits of existing deliveries (committed when this returns, outside a
    transaction); the ids of those deliveries."""
    if not hits:
        return frozenset()
    return rows_buffer("[" + ",".join(hit_row_json(hit) for hit in hits) + "]")


def rows_buffer(rows: str) -> frozenset[int]:
    """`hits_buffer` for rows already in JSON (an array of `hit_row_json`s): the spool's
    flusher hands over what the endpoints wrote without reading it in Python."""
    with _cursor() as cursor:
        cursor.execute(_BUFFER, [rows])
        return frozenset(delivery_id for (delivery_id,) in cursor.fetchall())


_BUFFER = """
INSERT INTO tracking_pendinghit (kind, delivery_id, url, occurred_at, ip, user_agent, method,
    event_key)
SELECT h.kind, h.delivery_id, h.url, h.occurred_at, h.ip, h.user_agent, h.method, h.event_key
FROM json_to_recordset(%s::json) AS h(kind varchar, delivery_id bigint, url text,
    occurred_at timestamptz, ip inet, user_agent varchar, method varchar, event_key uuid)
WHERE EXISTS (SELECT 1 FROM sending_delivery d WHERE d.id = h.delivery_id)
RETURNING delivery_id
"""


def pending_hits_drain(*, limit: int | None = None) -> tuple[int, int]:
    """Store up to `limit` (TRACKING_DRAIN_BATCH) buffered hits, oldest first, and delete
    them, in one transaction; (hits taken, events stored). Drains running at once take
    different hits (SKIP LOCKED)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM tracking_pendinghit WHERE id IN (SELECT id FROM tracking_pendinghit "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING kind, delivery_id, url, occurred_at, ip, user_agent, method, event_key",
            [limit or settings.TRACKING_DRAIN_BATCH],
        )
        hits = [Hit(*row) for row in cursor.fetchall()]
        return len(hits), hits_store(hits)


def pending_hits_drain_all(*, seconds: float | None = None) -> tuple[int, int]:
    """Drain batch after batch until the buffer is empty (or `seconds` have passed);
    (hits taken, events stored)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    taken = stored = 0
    while deadline is None or time.monotonic() < deadline:
        batch_taken, batch_stored = pending_hits_drain()
        taken, stored = taken + batch_taken, stored + batch_stored
        if not batch_taken:
            break
    return taken, stored


def hits_store(hits: Sequence[Hit]) -> int:
    """Store the hits of known, handed-over deliveries whose campaign tracks them, with
    their counters; the number of events stored (a hit already stored is not again)."""
    unique = {hit.event_key: hit for hit in hits}
    ordered = sorted(unique.values(), key=lambda hit: (hit.occurred_at, hit.event_key.hex))
    if not ordered:
        return 0
    with _cursor() as cursor:
        deliveries, recent = _deliveries_read(cursor, ordered)
        wanted = [hit for hit in ordered if _is_tracked(hit, deliveries.get(hit.delivery_id))]
        if not wanted:
            return 0
        cursor.execute(_STORE, [json.dumps(_event_rows(wanted, deliveries, recent))])
        (stored,) = cursor.fetchone()
    return stored


# Django turns psycopg's statement preparing off (prepare_threshold None, for poolers);
# Django's own cursors never prepare whatever the threshold, so raising it from None to
# "never by count" lets the cursors below prepare their statements and nothing else.
_PREPARE_ONLY_WHEN_ASKED = 2**31


class _PreparingCursor(psycopg.Cursor):
    """Binds parameters on the server (Django's cursors bind them in Python), prepares
    each statement on its connection's first use of it (the flushers' INSERT is planned
    once per connection, not once per batch) and reads results in binary (no parsing of
    timestamps in Python). Behind PgBouncer in transaction mode, 1.21 or later
    with max_prepared_statements set is needed."""

    def execute(self, query, params=None, *, prepare=True, binary=True):
        return super().execute(query, params, prepare=prepare, binary=binary)


def _cursor():
    """A preparing cursor, wrapped by Django: its error classes are those the flusher's
    retries know."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = _PREPARE_ONLY_WHEN_ASKED
    return connection.make_cursor(_PreparingCursor(raw))


_READ = (
    "SELECT d.id, d.state, d.workspace_id, d.campaign_id, d.contact_id, d.variant_id, "
    "d.provider, d.sent_at, c.track_opens, c.track_clicks, r.occurred_at, r.url, r.event_key "
    "FROM sending_delivery d JOIN campaigns_campaign c ON c.id = d.campaign_id "
    "LEFT JOIN LATERAL (SELECT e.occurred_at, e.url, e.event_key FROM tracking_event e "
    "WHERE d.id IN (SELECT value::bigint FROM json_array_elements_text(%(clicked)s::json)) "
    "AND e.kind = 'click' AND e.delivery_id = d.id "
    "AND e.occurred_at >= %(since)s AND e.occurred_at <= %(until)s) r ON true "
    "WHERE d.id IN (SELECT value::bigint FROM json_array_elements_text(%(ids)s::json)) "
    "ORDER BY r.occurred_at"
)


def _deliveries_read(cursor, hits: Sequence[Hit]) -> tuple[dict[int, _Delivery], _RecentClicks]:
    """The handed-over deliveries among the hits', and the stored clicks of the clicked
    ones within a minute before the batch's clicks."""
    clicks = [hit for hit in hits if hit.kind == CLICK]
    cursor.execute(
        _READ,
        {
            "ids": json.dumps(sorted({hit.delivery_id for hit in hits})),
            "clicked": json.dumps(sorted({hit.delivery_id for hit in clicks})),
            "since": (clicks[0] if clicks else hits[0]).occurred_at - RECENT_CLICKS,
            "until": (clicks[-1] if clicks else hits[-1]).occurred_at,
        },
    )
    handed_over: dict[int, _Delivery] = {}
    recent: _RecentClicks = defaultdict(list)
    for delivery_id, state, *facts, at, url, key in cursor.fetchall():
        if state not in NOT_HANDED_OVER:
            handed_over[delivery_id] = _Delivery(*facts)
        if at is not None:
            recent[delivery_id].append((at, url, key))
    return handed_over, recent


def _is_tracked(hit: Hit, delivery: _Delivery | None) -> bool:
    if delivery is None:
        return False
    if hit.kind == OPEN:
        return delivery.track_opens
    return hit.kind == CLICK and delivery.track_clicks


def _event_rows(
    hits: Sequence[Hit], deliveries: dict[int, _Delivery], recent: _RecentClicks
) -> list[dict]:
    """The hits as rows of the write (JSON: psycopg's array adaptation costs ten times as
    much), each judged human or machine, in time order: a batch's earlier clicks count as
    recent clicks of its later ones."""
    rows = []
    for hit in hits:
        delivery = deliveries[hit.delivery_id]
        earlier = []
        if hit.kind == CLICK:
            since = hit.occurred_at - RECENT_CLICKS
            earlier = [
                (at, url)
                for at, url, key in recent[hit.delivery_id]
                if since <= at <= hit.occurred_at and key != hit.event_key
            ]
            recent[hit.delivery_id].append((hit.occurred_at, hit.url, hit.event_key))
        ip = _ip_clean(hit.ip)
        user_agent = (hit.user_agent or "")[:_USER_AGENT_MAX]
        method = (hit.method or "GET").upper()[:_METHOD_MAX]
        rule = machine_rule(
            kind=hit.kind,
            method=method,
            ip=ip,
            user_agent=user_agent,
            occurred_at=hit.occurred_at,
            sent_at=delivery.sent_at,
            recent_clicks=earlier,
            url=hit.url,
        )
        url = hit.url if hit.kind == CLICK else ""
        rows.append(
            {
                "occurred_at": hit.occurred_at.isoformat(),
                "kind": hit.kind,
                "workspace_id": delivery.workspace_id,
                "campaign_id": delivery.campaign_id,
                "delivery_id": hit.delivery_id,
                "contact_id": delivery.contact_id,
                "variant_id": delivery.variant_id,
                "provider": delivery.provider,
                "url": url,
                "url_hash": url_hash(url) if url else "",
                "machine_rule": rule,
                "ip": ip,
                "user_agent": user_agent,
                "method": method,
                "event_key": str(hit.event_key),
            }
        )
    return rows


@lru_cache(maxsize=4096)
def _ip_clean(ip: str | None) -> str | None:
    """The address as PostgreSQL's inet reads it, or None (one bad address must not fail
    a batch); cached like `address_parse`."""
    address = address_parse(ip) if ip else None
    return None if address is None else str(address)


# The write of a batch. `event`: the hits whose event_key was new (a batch written again
# after a lost connection adds nothing twice); everything after counts only those.
_STORE = """
WITH hit AS (
    SELECT * FROM json_to_recordset(%s::json) AS h(occurred_at timestamptz, kind varchar,
        workspace_id bigint, campaign_id bigint, delivery_id bigint, contact_id bigint,
        variant_id bigint, provider varchar, url text, url_hash varchar, machine_rule varchar,
        ip inet, user_agent varchar, method varchar, event_key uuid)
),
stored AS (
    INSERT INTO tracking_event (occurred_at, kind, workspace_id, campaign_id, delivery_id,
        contact_id, url, machine_rule, ip, user_agent, method, event_key)
    SELECT occurred_at, kind, workspace_id, campaign_id, delivery_id, contact_id, url,
        machine_rule, ip, user_agent, method, event_key
    FROM hit
    ON CONFLICT (event_key, occurred_at) DO NOTHING
    RETURNING event_key
),
event AS (
    SELECT hit.*, hit.kind = 'open' AS is_open, hit.machine_rule = '' AS is_human
    FROM hit JOIN stored USING (event_key)
),
per_delivery AS (
    SELECT delivery_id, min(workspace_id) AS workspace_id, min(campaign_id) AS campaign_id,
        min(variant_id) AS variant_id, min(provider) AS provider,
        count(*) FILTER (WHERE is_open) AS opens,
        count(*) FILTER (WHERE is_open AND is_human) AS human_opens,
        count(*) FILTER (WHERE NOT is_open) AS clicks,
        count(*) FILTER (WHERE NOT is_open AND is_human) AS human_clicks,
        min(occurred_at) FILTER (WHERE is_open) AS open_at,
        min(occurred_at) FILTER (WHERE is_open AND is_human) AS human_open_at,
        min(occurred_at) FILTER (WHERE NOT is_open) AS click_at,
        min(occurred_at) FILTER (WHERE NOT is_open AND is_human) AS human_click_at,
        max(occurred_at) AS last_at
    FROM event GROUP BY delivery_id
),
activity AS (
    INSERT INTO tracking_deliveryactivity AS a (delivery_id, workspace_id, campaign_id,
        variant_id, provider, opens, human_opens, clicks, human_clicks, first_open_at,
        first_human_open_at, first_click_at, first_human_click_at, last_event_at)
    SELECT delivery_id, workspace_id, campaign_id, variant_id, provider, opens, human_opens,
        clicks, human_clicks, open_at, human_open_at, click_at, human_click_at, last_at
    FROM per_delivery ORDER BY delivery_id
    ON CONFLICT (delivery_id) DO UPDATE SET
        opens = a.opens + EXCLUDED.opens,
        human_opens = a.human_opens + EXCLUDED.human_opens,
        clicks = a.clicks + EXCLUDED.clicks,
        human_clicks = a.human_clicks + EXCLUDED.human_clicks,
        -- The first time recorded stays: the unique counted in its hour matches it.
        first_open_at = COALESCE(a.first_open_at, EXCLUDED.first_open_at),
        first_human_open_at = COALESCE(a.first_human_open_at, EXCLUDED.first_human_open_at),
        first_click_at = COALESCE(a.first_click_at, EXCLUDED.first_click_at),
        first_human_click_at = COALESCE(a.first_human_click_at, EXCLUDED.first_human_click_at),
        last_event_at = GREATEST(a.last_event_at, EXCLUDED.last_event_at)
    RETURNING delivery_id, opens, human_opens, clicks, human_clicks
),
-- This batch's first events ever per delivery: a total equal to the batch's own addition
-- was zero before it.
first_event AS (
    SELECT p.workspace_id, p.campaign_id,
        CASE WHEN p.opens > 0 AND a.opens = p.opens THEN p.open_at END AS open_at,
        CASE WHEN p.human_opens > 0 AND a.human_opens = p.human_opens
            THEN p.human_open_at END AS human_open_at,
        CASE WHEN p.clicks > 0 AND a.clicks = p.clicks THEN p.click_at END AS click_at,
        CASE WHEN p.human_clicks > 0 AND a.human_clicks = p.human_clicks
            THEN p.human_click_at END AS human_click_at
    FROM per_delivery p JOIN activity a USING (delivery_id)
),
link_batch AS (
    SELECT delivery_id, url_hash, min(workspace_id) AS workspace_id,
        min(campaign_id) AS campaign_id, min(url) AS url,
        count(*) AS clicks, count(*) FILTER (WHERE is_human) AS human_clicks,
        min(occurred_at) AS click_at, min(occurred_at) FILTER (WHERE is_human) AS human_click_at
    FROM event WHERE NOT is_open GROUP BY delivery_id, url_hash
),
-- Returned: the pairs clicked for the first time (inserted: xmax = 0), and those clicked
-- before by machines only whose first human click is in this batch (the empty
-- first_human_click_at filled, under the row's lock: two writers cannot both fill it).
link_first AS (
    INSERT INTO tracking_linkclick AS l (workspace_id, delivery_id, campaign_id, url_hash,
        first_click_at, first_human_click_at)
    SELECT workspace_id, delivery_id, campaign_id, url_hash, click_at, human_click_at
    FROM link_batch ORDER BY delivery_id, url_hash
    ON CONFLICT (delivery_id, url_hash) DO UPDATE
        SET first_human_click_at = EXCLUDED.first_human_click_at
        WHERE l.first_human_click_at IS NULL AND EXCLUDED.first_human_click_at IS NOT NULL
    RETURNING delivery_id, url_hash, l.xmax = 0 AS is_first,
        l.first_human_click_at IS NOT NULL AS is_first_human
),
hourly AS (
    INSERT INTO tracking_hourlyactivity AS h (workspace_id, campaign_id, hour, opens,
        human_opens, clicks, human_clicks, unique_opens, unique_human_opens, unique_clicks,
        unique_human_clicks)
    SELECT min(workspace_id), campaign_id, hour, sum(opens), sum(human_opens), sum(clicks),
        sum(human_clicks), sum(unique_opens), sum(unique_human_opens), sum(unique_clicks),
        sum(unique_human_clicks)
    FROM (
        SELECT workspace_id, campaign_id, date_trunc('hour', occurred_at, 'UTC') AS hour,
            is_open::int AS opens, (is_open AND is_human)::int AS human_opens,
            (NOT is_open)::int AS clicks, (NOT is_open AND is_human)::int AS human_clicks,
            0 AS unique_opens, 0 AS unique_human_opens, 0 AS unique_clicks,
            0 AS unique_human_clicks
        FROM event
        UNION ALL
        SELECT workspace_id, campaign_id, date_trunc('hour', open_at, 'UTC'),
            0, 0, 0, 0, 1, 0, 0, 0 FROM first_event WHERE open_at IS NOT NULL
        UNION ALL
        SELECT workspace_id, campaign_id, date_trunc('hour', human_open_at, 'UTC'),
            0, 0, 0, 0, 0, 1, 0, 0 FROM first_event WHERE human_open_at IS NOT NULL
        UNION ALL
        SELECT workspace_id, campaign_id, date_trunc('hour', click_at, 'UTC'),
            0, 0, 0, 0, 0, 0, 1, 0 FROM first_event WHERE click_at IS NOT NULL
        UNION ALL
        SELECT workspace_id, campaign_id, date_trunc('hour', human_click_at, 'UTC'),
            0, 0, 0, 0, 0, 0, 0, 1 FROM first_event WHERE human_click_at IS NOT NULL
    ) AS counts
    GROUP BY campaign_id, hour ORDER BY campaign_id, hour
    ON CONFLICT (campaign_id, hour) DO UPDATE SET
        opens = h.opens + EXCLUDED.opens,
        human_opens = h.human_opens + EXCLUDED.human_opens,
        clicks = h.clicks + EXCLUDED.clicks,
        human_clicks = h.human_clicks + EXCLUDED.human_clicks,
        unique_opens = h.unique_opens + EXCLUDED.unique_opens,
        unique_human_opens = h.unique_human_opens + EXCLUDED.unique_human_opens,
        unique_clicks = h.unique_clicks + EXCLUDED.unique_clicks,
        unique_human_clicks = h.unique_human_clicks + EXCLUDED.unique_human_clicks
),
link_activity AS (
    INSERT INTO tracking_linkactivity AS k (workspace_id, campaign_id, url_hash, url, clicks,
        human_clicks, unique_clicks, unique_human_clicks)
    SELECT min(b.workspace_id), b.campaign_id, b.url_hash, min(b.url), sum(b.clicks),
        sum(b.human_clicks), count(*) FILTER (WHERE f.is_first),
        count(*) FILTER (WHERE f.is_first_human)
    FROM link_batch b LEFT JOIN link_first f USING (delivery_id, url_hash)
    GROUP BY b.campaign_id, b.url_hash ORDER BY b.campaign_id, b.url_hash
    ON CONFLICT (campaign_id, url_hash) DO UPDATE SET
        clicks = k.clicks + EXCLUDED.clicks,
        human_clicks = k.human_clicks + EXCLUDED.human_clicks,
        unique_clicks = k.unique_clicks + EXCLUDED.unique_clicks,
        unique_human_clicks = k.unique_human_clicks + EXCLUDED.unique_human_clicks
),
-- Contact.last_opened_at / last_clicked_at from human events, never moved back; the rows
-- are locked in id order first (UPDATE ... FROM may visit them in any order).
touched AS (
    SELECT contact_id AS id, max(occurred_at) FILTER (WHERE is_open) AS opened_at,
        max(occurred_at) FILTER (WHERE NOT is_open) AS clicked_at
    FROM event WHERE is_human AND contact_id IS NOT NULL GROUP BY contact_id
),
locked AS (
    SELECT c.id FROM contacts_contact c WHERE c.id IN (SELECT id FROM touched)
    ORDER BY c.id FOR NO KEY UPDATE
),
contact AS (
    UPDATE contacts_contact c SET
        last_opened_at = GREATEST(c.last_opened_at, t.opened_at),
        last_clicked_at = GREATEST(c.last_clicked_at, t.clicked_at)
    FROM touched t JOIN locked USING (id)
    WHERE c.id = t.id
)
SELECT count(*) FROM stored
"""
