"""The operators' views of traffic shaping, in the admin: the sending IPs today (state,
warm-up caps, volume and yesterday's rates per provider, blocklist listings) and the mail
queue (unfinished deliveries per provider and reason, with "retry now", "hold" and
"release" per provider).

Plain views added to the admin site's URLs in sending/admin.py, like the outbox: staff
only, after two-factor sign-in (admin_view).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.contrib import admin, messages
from django.db import connection
from django.db.models import Count, Min, Q, Value
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.errors import ApplicationError
from sending import queue_state, warmup
from sending.models import Delivery, DnsblListing, ProviderLimit, SendingIp
from sending.models.shaping import PROVIDERS
from sending.services.deliveries import deliveries_retry_now
from sending.services.queue import provider_hold, provider_release

State = Delivery.State

# --- Sending IPs: today ----------------------------------------------------------------

# Sent, deferred, bounced and complained counts per (IP, provider, day) for yesterday and
# today, every IP at once, counted as warm-up stats count them (sending/warmup.py); the
# updated_at bound lets the (source_ip, provider, updated_at) index serve it.
_IP_DAYS_SQL = """
SELECT host(d.source_ip), d.provider, (e.at AT TIME ZONE %(tz)s)::date AS day,
       count(*) FILTER (WHERE e.kind = 's'), count(*) FILTER (WHERE e.kind = 'd'),
       count(*) FILTER (WHERE e.kind = 'b'), count(*) FILTER (WHERE e.kind = 'c')
FROM sending_delivery d
CROSS JOIN LATERAL (VALUES
    ('s', d.sent_at),
    ('d', CASE WHEN d.state = 'deferred' THEN d.updated_at END),
    ('b', CASE WHEN d.state = 'bounced' THEN COALESCE(d.bounced_at, d.updated_at) END),
    ('c', d.complained_at)
) AS e(kind, at)
WHERE d.source_ip IS NOT NULL AND d.updated_at >= %(since)s
  AND e.at >= %(since)s AND e.at < %(until)s
GROUP BY 1, 2, 3
"""


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


@dataclass(frozen=True)
class IpProviderRow:
    """One provider's line under an IP."""

    provider: str
    day: int | None  # the warm-up day (warming IPs only)
    cap: int | None  # today's cap; None: no warm-up cap
    sent_today: int
    deferral_percent: float | None  # yesterday's, over what was attempted
    bounce_percent: float | None
    held_for: list[str]


@dataclass
class IpToday:
    sending_ip: SendingIp
    providers: list[IpProviderRow] = field(default_factory=list)
    listings: list[DnsblListing] = field(default_factory=list)
    sent_today: int = 0
    deferral_percent: float | None = None
    bounce_percent: float | None = None


def ip_days_stats(*, today: dt.date) -> dict[str, dict[str, dict[dt.date, warmup.DayStats]]]:
    """{address: {provider: {day: DayStats}}} of yesterday and today, in one query."""
    tz = timezone.get_default_timezone()
    since = dt.datetime.combine(today - dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    until = dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    found: dict[str, dict[str, dict[dt.date, warmup.DayStats]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_IP_DAYS_SQL, {"tz": str(tz), "since": since, "until": until})
        for address, provider, day, sent, deferred, bounced, complained in cursor.fetchall():
            found.setdefault(address, {}).setdefault(provider, {})[day] = warmup.DayStats(
                sent, deferred, bounced, complained
            )
    return found


def sending_ips_today(*, today: dt.date) -> list[tuple[str, list[IpToday]]]:
    """Every sending IP grouped by pool (pool name, its IPs), with what the page shows."""
    yesterday = today - dt.timedelta(days=1)
    days_by_ip = ip_days_stats(today=today)
    known_providers = list(
        ProviderLimit.objects.order_by("provider").values_list("provider", flat=True)
    )
    listings: dict[int, list[DnsblListing]] = {}
    for listing in (
        DnsblListing.objects.filter(delisted_at__isnull=True, sending_ip__isnull=False)
        .select_related("zone")
        .order_by("-listed_at")
    ):
        listings.setdefault(listing.sending_ip_id, []).append(listing)
    pools: dict[str, list[IpToday]] = {}
    for sending_ip in SendingIp.objects.select_related("pool__warmup_schedule").order_by(
        "pool__name", "address"
    ):
        by_provider = days_by_ip.get(sending_ip.address, {})
        warming = sending_ip.state == SendingIp.State.WARMING
        # A warming IP's day counts healthy days since its start: read them (one query).
        since_start = (
            warmup.warmup_stats_for(ip_or_domain=sending_ip, provider=None, today=today)
            if warming
            else {}
        )
        caps = warmup.schedule_for(sending_ip) if warming else None
        providers = (
            sorted(set(known_providers) | set(by_provider)) if warming else sorted(by_provider)
        )
        row = IpToday(sending_ip=sending_ip, listings=listings.get(sending_ip.pk, []))
        total_yesterday = warmup.DayStats()
        for provider in providers:
            days = by_provider.get(provider, {})
            now_stats = days.get(today, warmup.DayStats())
            then = days.get(yesterday, warmup.DayStats())
            stats = since_start.get(provider, {})
            row.providers.append(
                IpProviderRow(
                    provider=provider,
                    day=warmup.effective_warmup_day(
                        started_on=sending_ip.warmup_started_on, today=today, daily_stats=stats
                    )
                    if warming
                    else None,
                    cap=warmup.cap_today(
                        ip_or_domain_state=sending_ip,
                        schedule=caps,
                        provider=provider,
                        today=today,
                        stats=stats,
                    ),
                    sent_today=now_stats.sent,
                    deferral_percent=_percent(then.deferred, then.attempted),
                    bounce_percent=_percent(then.bounced, then.attempted),
                    held_for=warmup.is_held(today=today, daily_stats=stats) if warming else [],
                )
            )
            row.sent_today += now_stats.sent
            total_yesterday = warmup.DayStats(
                total_yesterday.sent + then.sent,
                total_yesterday.deferred + then.deferred,
                total_yesterday.bounced + then.bounced,
            )
        row.deferral_percent = _percent(total_yesterday.deferred, total_yesterday.attempted)
        row.bounce_percent = _percent(total_yesterday.bounced, total_yesterday.attempted)
        pools.setdefault(sending_ip.pool.name, []).append(row)
    return list(pools.items())


@require_GET
def sending_ips_today_view(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    context = {
        **admin.site.each_context(request),
        "title": "Sending IPs: today",
        "today": today,
        "pools": sending_ips_today(today=today),
    }
    return TemplateResponse(request, "admin/sending/sending_ips_today.html", context)


# --- Mail queue --------------------------------------------------------------------------

REASONS = {
    State.QUEUED: "queued",
    State.DEFERRED: "deferred",
    State.HOLDING: "holding for A/B",
    State.CLAIMED: "in flight",
    State.IN_FLIGHT: "in flight",
}
# "held": queued and due deferred rows of a provider an operator holds; "warming": queued
# rows of campaigns that a warm-up cap refused today (sending/queue_state.py).
REASON_ORDER = ["queued", "warming", "held", "deferred", "holding for A/B", "in flight"]
PROVIDER_LABELS = dict(PROVIDERS)


@dataclass
class ProviderQueue:
    provider: str
    limit: ProviderLimit | None = None  # the operators' settings and hold, if any
    counts: dict[str, int] = field(default_factory=dict)  # reason -> rows
    deferred_due: int = 0
    oldest_due_since: dt.datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def is_held(self) -> bool:
        return self.limit is not None and self.limit.is_held

    @property
    def can_hold(self) -> bool:
        return self.provider in PROVIDER_LABELS

    def oldest_due_age(self, now: dt.datetime) -> dt.timedelta | None:
        return now - self.oldest_due_since if self.oldest_due_since else None

    def reason_counts(self) -> list[tuple[str, int]]:
        return [(reason, self.counts.get(reason, 0)) for reason in REASON_ORDER]

    def add(self, reason: str, rows: int) -> None:
        if rows:
            self.counts[reason] = self.counts.get(reason, 0) + rows


def mail_queue(
    *,
    now: dt.datetime,
    limits: dict[str, ProviderLimit] | None = None,
    warming_waits: dict[str, set[int]] | None = None,
) -> list[ProviderQueue]:
    """Unfinished deliveries per destination provider and reason, in one grouped query;
    every known provider is listed (so that it can be held), empty or not.

    A row is due since its creation when queued, since next_attempt_at when deferred and
    that time has come; the oldest due row's age says how far behind a provider is. The
    filter is Delivery.OPEN_STATES exactly, so that a partial index on those states
    (provider, state) can serve it. `limits` ({provider: ProviderLimit}) tell the held
    providers, `warming_waits` ({provider: campaign ids}) the campaigns a warm-up cap
    refused today.
    """
    limits = limits or {}
    warming_waits = warming_waits or {}
    held = {provider for provider, limit in limits.items() if limit.is_held}
    due_deferred = Q(state=State.DEFERRED, next_attempt_at__lte=now)
    waiting = Q()
    for provider, campaign_ids in warming_waits.items():
        waiting |= Q(provider=provider, campaign_id__in=campaign_ids)
    rows = (
        Delivery.objects.filter(state__in=Delivery.OPEN_STATES)
        .values("provider", "state")
        .annotate(
            rows=Count("pk"),
            deferred_due=Count("pk", filter=due_deferred),
            warming=Count("pk", filter=Q(state=State.QUEUED) & waiting)
            if warming_waits
            else Value(0),
            queued_since=Min("created_at", filter=Q(state=State.QUEUED)),
            deferred_since=Min("next_attempt_at", filter=due_deferred),
        )
        .order_by()
    )
    queues = {
        provider: ProviderQueue(provider=provider, limit=limits.get(provider))
        for provider in PROVIDER_LABELS
    }
    for row in rows:
        provider = row["provider"]
        queue = queues.setdefault(provider, ProviderQueue(provider, limit=limits.get(provider)))
        if row["state"] == State.QUEUED and provider in held:
            queue.add("held", row["rows"])
        elif row["state"] == State.QUEUED:
            queue.add("warming", row["warming"])
            queue.add("queued", row["rows"] - row["warming"])
        elif row["state"] == State.DEFERRED and provider in held:
            queue.add("held", row["deferred_due"])
            queue.add("deferred", row["rows"] - row["deferred_due"])
        else:
            queue.add(REASONS[row["state"]], row["rows"])
        queue.deferred_due += row["deferred_due"]
        for since in (row["queued_since"], row["deferred_since"]):
            if since and (queue.oldest_due_since is None or since < queue.oldest_due_since):
                queue.oldest_due_since = since
    return sorted(queues.values(), key=lambda queue: (-queue.total, queue.provider))


@require_GET
def mail_queue_view(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    queues = mail_queue(
        now=now,
        limits={limit.provider: limit for limit in ProviderLimit.objects.all()},
        warming_waits=queue_state.warming_waits(),
    )
    context = {
        **admin.site.each_context(request),
        "title": "Mail queue",
        "reasons": REASON_ORDER,
        "rows": [(queue, queue.oldest_due_age(now)) for queue in queues],
        "totals": [sum(queue.counts.get(reason, 0) for queue in queues) for reason in REASON_ORDER],
        "is_empty": not any(queue.total for queue in queues),
    }
    return TemplateResponse(request, "admin/sending/mail_queue.html", context)


@require_POST
def mail_queue_retry_now(request: HttpRequest) -> HttpResponse:
    provider = request.POST.get("provider", "")
    changed = deliveries_retry_now(provider=provider, acting_user=request.user)
    messages.success(
        request,
        f"{changed} deferred deliver{'y' if changed == 1 else 'ies'} to "
        f"{provider or '(unknown provider)'} due now.",
    )
    return HttpResponseRedirect(reverse("admin:sending_mail_queue"))


@require_POST
def mail_queue_hold(request: HttpRequest) -> HttpResponse:
    provider = request.POST.get("provider", "")
    try:
        limit = provider_hold(
            provider=provider, reason=request.POST.get("reason", ""), acting_user=request.user
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{limit} held: nothing is sent to it until released.")
    return HttpResponseRedirect(reverse("admin:sending_mail_queue"))


@require_POST
def mail_queue_release(request: HttpRequest) -> HttpResponse:
    provider = request.POST.get("provider", "")
    try:
        limit = provider_release(provider=provider, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{limit} released: its waiting mail goes again.")
    return HttpResponseRedirect(reverse("admin:sending_mail_queue"))
