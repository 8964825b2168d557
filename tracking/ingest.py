"""Storing opens and clicks: events and their counters, in one transaction per batch.

The endpoints hand hits to the writer (tracking/writer.py), which passes whatever queued
meanwhile to `hits_store` at once. A batch costs a fixed number of statements whatever
its size: one read of the deliveries, one of their recent clicks (clicks only), one
multi-row insert of the events, and one set-based upsert per counter table for the events
really inserted (an event_key written twice is stored once, and counted once).

Unique counts are exact under concurrent writers without reading before writing: the
upsert of a delivery's row returns its counters after the addition, and a counter that
equals this batch's own addition was zero before, so this batch saw the delivery's first
open (or click, human or not). A link's first click per delivery is the LinkClick row an
INSERT ... ON CONFLICT DO NOTHING really inserted. Every multi-row statement takes its
rows in key order, so that writers in several processes lock rows in the same order and
cannot deadlock one another.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from sending.models import Delivery
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


@dataclass(frozen=True)
class _Event:
    hit: Hit
    delivery: _Delivery
    machine_rule: str
    ip: str | None
    user_agent: str
    method: str

    @property
    def is_human(self) -> bool:
        return not self.machine_rule

    @property
    def is_open(self) -> bool:
        return self.hit.kind == OPEN

    @property
    def url_hash(self) -> str:
        return url_hash(self.hit.url)


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class StoreResult:
    stored: int  # events stored (a hit stored before is not again)
    known_delivery_ids: frozenset[int]  # the hits' deliveries that exist


def hits_store(hits: Sequence[Hit]) -> int:
    """Store the hits of known, handed-over deliveries whose campaign tracks them, with
    their counters; the number of events stored (a hit already stored is not again)."""
    return hits_store_result(hits).stored


def hits_store_result(hits: Sequence[Hit]) -> StoreResult:
    """`hits_store`, also telling which deliveries exist (a click on a link of a deleted
    delivery is not followed)."""
    unique = {hit.event_key: hit for hit in hits}
    ordered = sorted(unique.values(), key=lambda hit: (hit.occurred_at, hit.event_key.hex))
    if not ordered:
        return StoreResult(0, frozenset())
    with transaction.atomic(), connection.cursor() as cursor:
        deliveries, known = _deliveries_read({hit.delivery_id for hit in ordered})
        wanted = [hit for hit in ordered if _is_tracked(hit, deliveries.get(hit.delivery_id))]
        if not wanted:
            return StoreResult(0, known)
        events = _classify(wanted, deliveries, _recent_clicks(cursor, wanted))
        inserted = _events_insert(cursor, events)
        events = [event for event in events if event.hit.event_key in inserted]
        if not events:
            return StoreResult(0, known)
        firsts = _delivery_activity_upsert(cursor, events)
        link_firsts = _link_clicks_insert(cursor, events)
        _hourly_activity_upsert(cursor, events, firsts)
        _link_activity_upsert(cursor, events, link_firsts)
        _contacts_touch(cursor, events)
    return StoreResult(len(events), known)


def _deliveries_read(ids: Iterable[int]) -> tuple[dict[int, _Delivery], frozenset[int]]:
    """The handed-over deliveries among ids, and all of ids that exist."""
    rows = Delivery.objects.filter(id__in=list(ids)).values_list(
        "id",
        "state",
        "workspace_id",
        "campaign_id",
        "contact_id",
        "variant_id",
        "provider",
        "sent_at",
        "campaign__track_opens",
        "campaign__track_clicks",
    )
    handed_over, known = {}, set()
    for delivery_id, state, *facts in rows:
        known.add(delivery_id)
        if state not in NOT_HANDED_OVER:
            handed_over[delivery_id] = _Delivery(*facts)
    return handed_over, frozenset(known)


def _is_tracked(hit: Hit, delivery: _Delivery | None) -> bool:
    if delivery is None:
        return False
    if hit.kind == OPEN:
        return delivery.track_opens
    return hit.kind == CLICK and delivery.track_clicks


def _recent_clicks(cursor, hits: Sequence[Hit]) -> _RecentClicks:
    """Stored clicks of the batch's clicked deliveries within a minute before its clicks."""
    clicks = [hit for hit in hits if hit.kind == CLICK]
    recent: _RecentClicks = defaultdict(list)
    if not clicks:
        return recent
    cursor.execute(
        "SELECT delivery_id, occurred_at, url, event_key FROM tracking_event "
        "WHERE kind = 'click' AND delivery_id = ANY(%s::bigint[]) "
        "AND occurred_at >= %s AND occurred_at <= %s ORDER BY occurred_at",
        [
            sorted({hit.delivery_id for hit in clicks}),
            clicks[0].occurred_at - RECENT_CLICKS,
            clicks[-1].occurred_at,
        ],
    )
    for delivery_id, occurred_at, url, event_key in cursor.fetchall():
        recent[delivery_id].append((occurred_at, url, event_key))
    return recent


def _classify(
    hits: Sequence[Hit],
    deliveries: dict[int, _Delivery],
    recent: _RecentClicks,
) -> list[_Event]:
    """Judge each hit human or machine, in time order: a batch's earlier clicks count as
    recent clicks of its later ones."""
    events = []
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
        events.append(_Event(hit, delivery, rule, ip, user_agent, method))
    return events


def _ip_clean(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def _events_insert(cursor, events: Sequence[_Event]) -> set[uuid.UUID]:
    """Insert the events; the keys of those not stored before."""
    cursor.execute(
        "INSERT INTO tracking_event (occurred_at, kind, workspace_id, campaign_id, "
        "delivery_id, contact_id, url, machine_rule, ip, user_agent, method, event_key) "
        "SELECT * FROM unnest(%s::timestamptz[], %s::varchar[], %s::bigint[], %s::bigint[], "
        "%s::bigint[], %s::bigint[], %s::text[], %s::varchar[], %s::inet[], %s::varchar[], "
        "%s::varchar[], %s::uuid[]) "
        "ON CONFLICT (event_key, occurred_at) DO NOTHING RETURNING event_key",
        _columns(
            [
                (
                    e.hit.occurred_at,
                    e.hit.kind,
                    e.delivery.workspace_id,
                    e.delivery.campaign_id,
                    e.hit.delivery_id,
                    e.delivery.contact_id,
                    e.hit.url if e.hit.kind == CLICK else "",
                    e.machine_rule,
                    e.ip,
                    e.user_agent,
                    e.method,
                    e.hit.event_key,
                )
                for e in events
            ],
            width=12,
        ),
    )
    return {key for (key,) in cursor.fetchall()}


@dataclass
class _Firsts:
    """Per delivery: the times of this batch's first events, and which of them were the
    delivery's first ever (all kinds, human only)."""

    campaign_id: int = 0
    open_at: datetime | None = None
    human_open_at: datetime | None = None
    click_at: datetime | None = None
    human_click_at: datetime | None = None
    opens: int = 0
    human_opens: int = 0
    clicks: int = 0
    human_clicks: int = 0
    last_at: datetime | None = None
    is_first_open: bool = False
    is_first_human_open: bool = False
    is_first_click: bool = False
    is_first_human_click: bool = False


def _delivery_activity_upsert(cursor, events: Sequence[_Event]) -> dict[int, _Firsts]:
    per_delivery: dict[int, _Firsts] = {}
    facts: dict[int, _Delivery] = {}
    for event in events:  # in time order: the first seen is the earliest
        firsts = per_delivery.setdefault(
            event.hit.delivery_id, _Firsts(campaign_id=event.delivery.campaign_id)
        )
        facts[event.hit.delivery_id] = event.delivery
        at = event.hit.occurred_at
        if event.is_open:
            firsts.opens += 1
            firsts.open_at = firsts.open_at or at
            if event.is_human:
                firsts.human_opens += 1
                firsts.human_open_at = firsts.human_open_at or at
        else:
            firsts.clicks += 1
            firsts.click_at = firsts.click_at or at
            if event.is_human:
                firsts.human_clicks += 1
                firsts.human_click_at = firsts.human_click_at or at
        firsts.last_at = at
    ids = sorted(per_delivery)
    cursor.execute(
        "INSERT INTO tracking_deliveryactivity AS a (delivery_id, workspace_id, campaign_id, "
        "variant_id, provider, opens, human_opens, clicks, human_clicks, first_open_at, "
        "first_human_open_at, first_click_at, first_human_click_at, last_event_at) "
        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], "
        "%s::varchar[], %s::int[], %s::int[], %s::int[], %s::int[], %s::timestamptz[], "
        "%s::timestamptz[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[]) "
        "ORDER BY 1 "
        "ON CONFLICT (delivery_id) DO UPDATE SET "
        "opens = a.opens + EXCLUDED.opens, human_opens = a.human_opens + EXCLUDED.human_opens, "
        "clicks = a.clicks + EXCLUDED.clicks, "
        "human_clicks = a.human_clicks + EXCLUDED.human_clicks, "
        # The first time recorded stays: the unique counted in its hour matches it.
        "first_open_at = COALESCE(a.first_open_at, EXCLUDED.first_open_at), "
        "first_human_open_at = COALESCE(a.first_human_open_at, EXCLUDED.first_human_open_at), "
        "first_click_at = COALESCE(a.first_click_at, EXCLUDED.first_click_at), "
        "first_human_click_at = COALESCE(a.first_human_click_at, EXCLUDED.first_human_click_at), "
        "last_event_at = GREATEST(a.last_event_at, EXCLUDED.last_event_at) "
        "RETURNING delivery_id, opens, human_opens, clicks, human_clicks",
        _columns(
            [
                (
                    delivery_id,
                    facts[delivery_id].workspace_id,
                    facts[delivery_id].campaign_id,
                    facts[delivery_id].variant_id,
                    facts[delivery_id].provider,
                    f.opens,
                    f.human_opens,
                    f.clicks,
                    f.human_clicks,
                    f.open_at,
                    f.human_open_at,
                    f.click_at,
                    f.human_click_at,
                    f.last_at,
                )
                for delivery_id in ids
                for f in [per_delivery[delivery_id]]
            ],
            width=14,
        ),
    )
    for delivery_id, opens, human_opens, clicks, human_clicks in cursor.fetchall():
        f = per_delivery[delivery_id]
        # A total equal to this batch's own addition was zero before it.
        f.is_first_open = f.opens > 0 and opens == f.opens
        f.is_first_human_open = f.human_opens > 0 and human_opens == f.human_opens
        f.is_first_click = f.clicks > 0 and clicks == f.clicks
        f.is_first_human_click = f.human_clicks > 0 and human_clicks == f.human_clicks
    return per_delivery


@dataclass
class _LinkFirsts:
    """This batch's first clicks on links per delivery: (delivery, url hash) sets."""

    first_clicks: set[tuple[int, str]]
    first_human_clicks: set[tuple[int, str]]


def _link_clicks_insert(cursor, events: Sequence[_Event]) -> _LinkFirsts:
    pairs: dict[tuple[int, str], list] = {}
    for event in events:
        if event.is_open:
            continue
        key = (event.hit.delivery_id, event.url_hash)
        row = pairs.setdefault(
            key,
            [event.delivery.workspace_id, event.delivery.campaign_id, event.hit.occurred_at, None],
        )
        if event.is_human and row[3] is None:
            row[3] = event.hit.occurred_at
    if not pairs:
        return _LinkFirsts(set(), set())
    keys = sorted(pairs)

    def rows(selected):
        return _columns(
            [(pairs[k][0], k[0], pairs[k][1], k[1], pairs[k][2], pairs[k][3]) for k in selected],
            width=6,
        )

    insert = (
        "INSERT INTO tracking_linkclick AS l (workspace_id, delivery_id, campaign_id, url_hash, "
        "first_click_at, first_human_click_at) "
        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::varchar[], "
        "%s::timestamptz[], %s::timestamptz[]) ORDER BY 2, 4 "
    )
    cursor.execute(
        insert + "ON CONFLICT (delivery_id, url_hash) DO NOTHING RETURNING delivery_id, url_hash",
        rows(keys),
    )
    inserted = {(delivery_id, digest) for delivery_id, digest in cursor.fetchall()}
    first_human = {k for k in inserted if pairs[k][3] is not None}
    # Links clicked before, by machines only until now: this batch's human click is the
    # first human one when the row's first_human_click_at is still empty (checked under the
    # row's lock, so two writers cannot both see it empty).
    later_human = [k for k in keys if k not in inserted and pairs[k][3] is not None]
    if later_human:
        cursor.execute(
            insert + "ON CONFLICT (delivery_id, url_hash) DO UPDATE SET "
            "first_human_click_at = EXCLUDED.first_human_click_at "
            "WHERE l.first_human_click_at IS NULL RETURNING delivery_id, url_hash",
            rows(later_human),
        )
        first_human |= {(delivery_id, digest) for delivery_id, digest in cursor.fetchall()}
    return _LinkFirsts(inserted, first_human)


def _hourly_activity_upsert(cursor, events: Sequence[_Event], firsts: dict[int, _Firsts]) -> None:
    # [opens, human_opens, clicks, human_clicks, unique_opens, unique_human_opens,
    #  unique_clicks, unique_human_clicks] per (campaign, hour)
    hours: dict[tuple[int, datetime], list[int]] = {}
    workspaces: dict[int, int] = {}

    def row(campaign_id: int, at: datetime) -> list[int]:
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)  # UTC hours
        key = (campaign_id, hour)
        if key not in hours:
            hours[key] = [0] * 8
        return hours[key]

    for event in events:
        workspaces[event.delivery.campaign_id] = event.delivery.workspace_id
        counts = row(event.delivery.campaign_id, event.hit.occurred_at)
        offset = 0 if event.is_open else 2
        counts[offset] += 1
        counts[offset + 1] += event.is_human
    for f in firsts.values():
        for is_first, at, index in (
            (f.is_first_open, f.open_at, 4),
            (f.is_first_human_open, f.human_open_at, 5),
            (f.is_first_click, f.click_at, 6),
            (f.is_first_human_click, f.human_click_at, 7),
        ):
            if is_first:
                row(f.campaign_id, at)[index] += 1
    keys = sorted(hours)
    cursor.execute(
        "INSERT INTO tracking_hourlyactivity AS h (workspace_id, campaign_id, hour, opens, "
        "human_opens, clicks, human_clicks, unique_opens, unique_human_opens, unique_clicks, "
        "unique_human_clicks) "
        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::int[], "
        "%s::int[], %s::int[], %s::int[], %s::int[], %s::int[], %s::int[], %s::int[]) "
        "ORDER BY 2, 3 "
        "ON CONFLICT (campaign_id, hour) DO UPDATE SET "
        "opens = h.opens + EXCLUDED.opens, human_opens = h.human_opens + EXCLUDED.human_opens, "
        "clicks = h.clicks + EXCLUDED.clicks, "
        "human_clicks = h.human_clicks + EXCLUDED.human_clicks, "
        "unique_opens = h.unique_opens + EXCLUDED.unique_opens, "
        "unique_human_opens = h.unique_human_opens + EXCLUDED.unique_human_opens, "
        "unique_clicks = h.unique_clicks + EXCLUDED.unique_clicks, "
        "unique_human_clicks = h.unique_human_clicks + EXCLUDED.unique_human_clicks",
        _columns(
            [
                (workspaces[campaign_id], campaign_id, hour, *hours[campaign_id, hour])
                for campaign_id, hour in keys
            ],
            width=11,
        ),
    )


def _link_activity_upsert(cursor, events: Sequence[_Event], link_firsts: _LinkFirsts) -> None:
    # [workspace, url, clicks, human_clicks, unique_clicks, unique_human_clicks]
    links: dict[tuple[int, str], list] = {}
    campaign_of: dict[int, int] = {}
    for event in events:
        if event.is_open:
            continue
        campaign_of[event.hit.delivery_id] = event.delivery.campaign_id
        link = links.setdefault(
            (event.delivery.campaign_id, event.url_hash),
            [event.delivery.workspace_id, event.hit.url, 0, 0, 0, 0],
        )
        link[2] += 1
        link[3] += event.is_human
    if not links:
        return
    for pairs, index in ((link_firsts.first_clicks, 4), (link_firsts.first_human_clicks, 5)):
        for delivery_id, digest in pairs:
            links[campaign_of[delivery_id], digest][index] += 1
    keys = sorted(links)
    cursor.execute(
        "INSERT INTO tracking_linkactivity AS k (workspace_id, campaign_id, url_hash, url, "
        "clicks, human_clicks, unique_clicks, unique_human_clicks) "
        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::text[], "
        "%s::int[], %s::int[], %s::int[], %s::int[]) ORDER BY 2, 3 "
        "ON CONFLICT (campaign_id, url_hash) DO UPDATE SET "
        "clicks = k.clicks + EXCLUDED.clicks, "
        "human_clicks = k.human_clicks + EXCLUDED.human_clicks, "
        "unique_clicks = k.unique_clicks + EXCLUDED.unique_clicks, "
        "unique_human_clicks = k.unique_human_clicks + EXCLUDED.unique_human_clicks",
        _columns([(links[k][0], k[0], k[1], *links[k][1:]) for k in keys], width=8),
    )


def _contacts_touch(cursor, events: Sequence[_Event]) -> None:
    """Contact.last_opened_at / last_clicked_at from human events (never moved back)."""
    touched: dict[int, list] = {}
    for event in events:
        if not event.is_human or event.delivery.contact_id is None:
            continue
        times = touched.setdefault(event.delivery.contact_id, [None, None])
        times[0 if event.is_open else 1] = event.hit.occurred_at  # time order: the latest
    if not touched:
        return
    ids = sorted(touched)
    # The rows are locked in id order first: UPDATE ... FROM may visit them in any order.
    cursor.execute(
        "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) "
        "AS v(id, opened_at, clicked_at)), "
        "locked AS (SELECT c.id FROM contacts_contact c WHERE c.id = ANY(%s::bigint[]) "
        "ORDER BY c.id FOR NO KEY UPDATE) "
        "UPDATE contacts_contact c SET "
        "last_opened_at = GREATEST(c.last_opened_at, v.opened_at), "
        "last_clicked_at = GREATEST(c.last_clicked_at, v.clicked_at) "
        "FROM v, locked WHERE c.id = v.id AND locked.id = v.id",
        [*_columns([(i, *touched[i]) for i in ids], width=3), ids],
    )


def _columns(rows: Sequence[tuple], *, width: int) -> list[list]:
    """Rows as columns: the arrays unnest() turns back into rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width
