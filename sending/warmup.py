"""Warm-up arithmetic: how much a warming sending IP (or a new sending domain) may send to
one destination provider today.

A schedule is a list of daily caps: day 1 (the start day) may send daily_caps[0], day 2
daily_caps[1], ...; past the last day there is no cap. Caps apply per provider.

The hold rule: the ramp advances one day for each past day on which the IP (or domain)
sent to that provider and the day was healthy; a day whose deferral, bounce or complaint
rate for the provider crossed WARMUP_HOLD_*_PERCENT holds the ramp (the next day keeps
the same cap), and it resumes advancing after a healthy day. A day on which nothing was
sent to the provider does not advance it either: a provider learns a sender's volume
only from mail it receives, so a week of silence must not jump the cap from day 2's to
day 9's. Hence

    effective day = 1 + number of days from the start to yesterday that had sends to the
                    provider and crossed no threshold

Rates of a day: deferrals and bounces over what was attempted that day (sent + deferred +
bounced), complaints over what was sent. Every function takes `today` (and reads no
clock) so that tests can walk through days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.utils import timezone

from accounts.audit import audit_record
from campaigns.models import Campaign
from sending.models import Delivery, SendingDomain, SendingIp, WarmupSchedule
from sending.models.shaping import PROVIDERS, default_ramp
from sending.selectors import sending_domain_for_from_address

# An ETA further than this is no ETA (a cap of 0 for ever: a paused IP).
_ETA_HORIZON_DAYS = 3650


@dataclass(frozen=True)
class DayStats:
    """What one IP (or domain) did with one provider on one day."""

    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    complained: int = 0

    @property
    def attempted(self) -> int:
        # A message sent and bounced later the same day (an asynchronous DSN) counts twice:
        # rates come out a little low on such days, never high.
        return self.sent + self.deferred + self.bounced

    def crossed(self) -> list[str]:
        """The WARMUP_HOLD_* thresholds this day crossed (rates above them, in percent)."""
        crossed = []
        if self.attempted:
            if 100 * self.deferred / self.attempted > settings.WARMUP_HOLD_DEFERRAL_PERCENT:
                crossed.append("deferral")
            if 100 * self.bounced / self.attempted > settings.WARMUP_HOLD_BOUNCE_PERCENT:
                crossed.append("bounce")
        if self.sent and 100 * self.complained / self.sent > settings.WARMUP_HOLD_COMPLAINT_PERCENT:
            crossed.append("complaint")
        return crossed

    @property
    def advances(self) -> bool:
        """The day counts towards the ramp: mail was attempted and no rate crossed."""
        return self.attempted > 0 and not self.crossed()


# --- the arithmetic --------------------------------------------------------------------


def warmup_day(started_on: dt.date | None, today: dt.date) -> int:
    """Calendar day of the warm-up, day 1 being the start day (and any day before it, or
    every day while it has not started: blank means "from the first send")."""
    if started_on is None:
        return 1
    return max((today - started_on).days + 1, 1)


def daily_cap(schedule_caps: Sequence[int], day: int) -> int | None:
    """The cap of a warm-up day; None past the end of the schedule (no cap)."""
    day = max(day, 1)
    if day > len(schedule_caps):
        return None
    return int(schedule_caps[day - 1])


def effective_warmup_day(
    *, started_on: dt.date | None, today: dt.date, daily_stats: Mapping[dt.date, DayStats]
) -> int:
    """The ramp's day today: 1 + the healthy sending days since the start (see the module
    docstring); days without stats sent nothing and do not count."""
    if started_on is None:
        return 1
    return 1 + sum(
        1 for day, stats in daily_stats.items() if started_on <= day < today and stats.advances
    )


def is_held(*, today: dt.date, daily_stats: Mapping[dt.date, DayStats]) -> list[str]:
    """Why the ramp holds today: the thresholds yesterday crossed (empty: not held)."""
    yesterday = daily_stats.get(today - dt.timedelta(days=1))
    return yesterday.crossed() if yesterday else []


def caps_ahead(schedule_caps: Sequence[int], day: int) -> Iterator[int | None]:
    """The caps of `day`, `day + 1`, ... (the ramp advancing every day), then None."""
    day = max(day, 1)
    while day <= len(schedule_caps):
        yield int(schedule_caps[day - 1])
        day += 1
    yield None


def warmup_eta(
    *,
    remaining: int,
    today: dt.date,
    caps: Iterator[int | None] | Sequence[int | None],
    sent_today: int = 0,
) -> dt.date | None:
    """The day by which `remaining` more messages will have gone, if every day from today
    sends its cap and no day holds the ramp (caps: today's first, None = no cap).

    None when they never fit (caps of 0 for ever).
    """
    day = today
    caps = iter(caps)
    room_used = sent_today
    for _ in range(_ETA_HORIZON_DAYS):
        cap = next(caps, None)
        if cap is None:
            return day
        remaining -= max(cap - room_used, 0)
        if remaining <= 0:
            return day
        room_used = 0
        day += dt.timedelta(days=1)
    return None


# --- schedules -------------------------------------------------------------------------


def schedule_caps_validate(value: object) -> list[int]:
    """A schedule's caps as operators may save them: a non-empty list of positive whole
    numbers that never decrease; ValidationError with the first problem otherwise."""
    if not isinstance(value, list) or not value:
        raise ValidationError(
            "Enter the daily caps as a list of numbers, day 1 first, such as [50, 100, 500]."
        )
    for number, cap in enumerate(value, start=1):
        if isinstance(cap, bool) or not isinstance(cap, int):
            raise ValidationError(f"Day {number}'s cap ({cap!r}) is not a whole number.")
        if cap <= 0:
            raise ValidationError(f"Day {number}'s cap ({cap}) must be a positive number.")
        if number > 1 and cap < value[number - 2]:
            raise ValidationError(
                f"Day {number}'s cap ({cap}) is lower than day {number - 1}'s "
                f"({value[number - 2]}): caps must not decrease."
            )
    return value


def schedule_for(ip_or_domain: SendingIp | SendingDomain) -> list[int]:
    """The caps that apply: the IP's pool's schedule, else the default schedule (a
    domain always has the default), else the built-in ramp."""
    if isinstance(ip_or_domain, SendingIp) and ip_or_domain.pool.warmup_schedule_id:
        return list(ip_or_domain.pool.warmup_schedule.daily_caps)
    default = WarmupSchedule.objects.filter(is_default=True).only("daily_caps").first()
    return list(default.daily_caps) if default else default_ramp()


def _is_warming(ip_or_domain: SendingIp | SendingDomain) -> bool:
    if isinstance(ip_or_domain, SendingIp):
        return ip_or_domain.state == SendingIp.State.WARMING
    return not ip_or_domain.is_warmed_up


def cap_today(
    *,
    ip_or_domain_state: SendingIp | SendingDomain,
    schedule: WarmupSchedule | Sequence[int] | None = None,
    provider: str,
    today: dt.date,
    stats: Mapping[dt.date, DayStats] | None = None,
) -> int | None:
    """Today's cap of a sending IP or domain towards one provider; None: no warm-up cap.

    An active IP or a warmed-up domain has none; a paused (or disabled) IP has 0. `schedule`
    defaults to schedule_for(); `stats` (that IP's or domain's days with that provider) are
    read with warmup_stats() when not given.
    """
    target = ip_or_domain_state
    if isinstance(target, SendingIp) and (
        target.state == SendingIp.State.PAUSED or not target.is_active
    ):
        return 0
    if not _is_warming(target):
        return None
    caps = schedule_for(target) if schedule is None else schedule
    caps = caps.daily_caps if isinstance(caps, WarmupSchedule) else caps
    if stats is None:
        stats = warmup_stats_for(ip_or_domain=target, provider=provider, today=today)
    day = effective_warmup_day(started_on=target.warmup_started_on, today=today, daily_stats=stats)
    return daily_cap(caps, day)


# --- reading the days from deliveries --------------------------------------------------

# Every delivery gives up to four dated events; the day is the date in TIME_ZONE.
_STATS_SQL = """
SELECT d.provider, (e.at AT TIME ZONE %(tz)s)::date AS day,
       count(*) FILTER (WHERE e.kind = 's'), count(*) FILTER (WHERE e.kind = 'd'),
       count(*) FILTER (WHERE e.kind = 'b'), count(*) FILTER (WHERE e.kind = 'c')
FROM sending_delivery d {join}
CROSS JOIN LATERAL (VALUES
    ('s', d.sent_at),
    ('d', CASE WHEN d.state = 'deferred' THEN d.updated_at END),
    ('b', CASE WHEN d.state = 'bounced' THEN COALESCE(d.bounced_at, d.updated_at) END),
    ('c', d.complained_at)
) AS e(kind, at)
WHERE d.updated_at >= %(since)s AND e.at >= %(since)s AND e.at < %(until)s {where}
GROUP BY 1, 2
"""


def warmup_stats(
    *,
    source_ip: str | None = None,
    domain: SendingDomain | None = None,
    provider: str | None,
    days: int,
    today: dt.date,
) -> dict[str, dict[dt.date, DayStats]] | dict[dt.date, DayStats]:
    """Daily sent, deferred, bounced and complained counts of one sending IP (deliveries
    that left from it) or one sending domain (deliveries of campaigns whose From address
    is at it or under it), over the `days` days before today and today, in one query.

    With a provider: {day: DayStats}; with provider=None: {provider: {day: DayStats}}.
    Sent counts on sent_at's day, a deferral on the day of the row's last change, a bounce
    on bounced_at's (or the last change's), a complaint on complained_at's: the first
    complaint event of the delivery (FeedbackEvent copies it there), so that one complaint
    reported twice (ARF and an ESP's webhook) counts once.
    """
    if (source_ip is None) == (domain is None):
        raise ValueError("Give either source_ip or domain.")
    tz = timezone.get_default_timezone()
    since = dt.datetime.combine(today - dt.timedelta(days=days), dt.time.min, tzinfo=tz)
    until = dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    params: dict[str, object] = {"tz": str(tz), "since": since, "until": until}
    join, where = "", ""
    if source_ip is not None:
        where += " AND d.source_ip = %(ip)s"
        params["ip"] = source_ip
    else:
        join = "JOIN campaigns_campaign c ON c.id = d.campaign_id"
        where += (
            " AND d.workspace_id = %(workspace)s AND c.workspace_id = %(workspace)s"
            " AND (lower(split_part(c.from_email, '@', 2)) = %(domain)s"
            " OR lower(split_part(c.from_email, '@', 2)) LIKE %(subdomains)s)"
        )
        params |= {
            "workspace": domain.workspace_id,
            "domain": domain.domain,
            "subdomains": "%." + domain.domain,  # letters, digits, dots, hyphens only
        }
    if provider is not None:
        where += " AND d.provider = %(provider)s"
        params["provider"] = provider
    by_provider: dict[str, dict[dt.date, DayStats]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_STATS_SQL.format(join=join, where=where), params)
        for row_provider, day, sent, deferred, bounced, complained in cursor.fetchall():
            by_provider.setdefault(row_provider, {})[day] = DayStats(
                sent, deferred, bounced, complained
            )
    if provider is not None:
        return by_provider.get(provider, {})
    return by_provider


def warmup_stats_for(
    *, ip_or_domain: SendingIp | SendingDomain, provider: str | None, today: dt.date
) -> dict:
    """warmup_stats() of an IP or a domain since its warm-up started (today alone when it
    has not)."""
    started_on = ip_or_domain.warmup_started_on or today
    days = max((today - started_on).days, 0)
    if isinstance(ip_or_domain, SendingIp):
        return warmup_stats(
            source_ip=ip_or_domain.address, provider=provider, days=days, today=today
        )
    return warmup_stats(domain=ip_or_domain, provider=provider, days=days, today=today)


@dataclass(frozen=True)
class WarmupStatus:
    """What a campaign shows: "warming up: {sent_today} of {cap} today, ETA {eta}"."""

    day: int
    cap: int | None
    sent_today: int
    held_for: list[str]
    eta: dt.date | None


def warmup_status(
    *,
    ip_or_domain: SendingIp | SendingDomain,
    provider: str,
    remaining: int,
    today: dt.date,
    stats: Mapping[dt.date, DayStats] | None = None,
) -> WarmupStatus:
    """Today's day, cap and volume of an IP or domain towards a provider, and when
    `remaining` more messages will have gone (if no day holds the ramp)."""
    if stats is None:
        stats = warmup_stats_for(ip_or_domain=ip_or_domain, provider=provider, today=today)
    caps = schedule_for(ip_or_domain)
    day = effective_warmup_day(
        started_on=ip_or_domain.warmup_started_on, today=today, daily_stats=stats
    )
    cap = cap_today(
        ip_or_domain_state=ip_or_domain, schedule=caps, provider=provider, today=today, stats=stats
    )
    sent_today = stats[today].sent if today in stats else 0
    if cap is None:
        ahead: Iterator[int | None] = iter([None])
    elif cap == 0:
        ahead = iter([0] * _ETA_HORIZON_DAYS)
    else:
        ahead = caps_ahead(caps, day)
    return WarmupStatus(
        day=day,
        cap=cap,
        sent_today=sent_today,
        held_for=is_held(today=today, daily_stats=stats),
        eta=warmup_eta(remaining=remaining, today=today, caps=ahead, sent_today=sent_today),
    )


# --- state changes ---------------------------------------------------------------------


def warmup_mark_started(*, ip_or_domain: SendingIp | SendingDomain, today: dt.date) -> bool:
    """Day 1 is the first send's day: set the start date if blank (True when set now)."""
    model = type(ip_or_domain)
    changed = model.objects.filter(pk=ip_or_domain.pk, warmup_started_on__isnull=True).update(
        warmup_started_on=today
    )
    if changed:
        ip_or_domain.warmup_started_on = today
    return bool(changed)


def _has_graduated(*, started_on: dt.date | None, caps: list[int], today: dt.date, stats) -> bool:
    """Every provider that received mail during the warm-up is past the schedule's end
    (a provider that received none never saw the ramp: it does not hold anything up)."""
    if started_on is None or not stats:
        return False
    return all(
        daily_cap(
            caps,
            effective_warmup_day(started_on=started_on, today=today, daily_stats=days),
        )
        is None
        for days in stats.values()
    )


@transaction.atomic
def warmup_graduate(today: dt.date) -> dict[str, int]:
    """The daily step: warming IPs and new domains whose ramp reached the schedule's end
    for every provider they sent to become active / warmed up (audited). Counts of each."""
    ips = [
        sending_ip
        for sending_ip in SendingIp.objects.filter(
            state=SendingIp.State.WARMING, warmup_started_on__isnull=False
        ).select_related("pool__warmup_schedule")
        if _has_graduated(
            started_on=sending_ip.warmup_started_on,
            caps=schedule_for(sending_ip),
            today=today,
            stats=warmup_stats_for(ip_or_domain=sending_ip, provider=None, today=today),
        )
    ]
    domains = [
        domain
        for domain in SendingDomain.objects.filter(
            is_warmed_up=False, warmup_started_on__isnull=False
        ).select_related("workspace")
        if _has_graduated(
            started_on=domain.warmup_started_on,
            caps=schedule_for(domain),
            today=today,
            stats=warmup_stats_for(ip_or_domain=domain, provider=None, today=today),
        )
    ]
    for sending_ip in ips:
        if SendingIp.objects.filter(pk=sending_ip.pk, state=SendingIp.State.WARMING).update(
            state=SendingIp.State.ACTIVE
        ):
            audit_record(
                workspace=None,
                actor=None,
                verb="sending_ip.warmed_up",
                target=sending_ip,
                details={"started_on": sending_ip.warmup_started_on.isoformat()},
            )
    for domain in domains:
        if SendingDomain.objects.filter(pk=domain.pk, is_warmed_up=False).update(is_warmed_up=True):
            audit_record(
                workspace=domain.workspace,
                actor=None,
                verb="sending_domain.warmed_up",
                target=domain,
                details={"started_on": domain.warmup_started_on.isoformat()},
            )
    return {"ips": len(ips), "domains": len(domains)}


# --- engaged recipients first ----------------------------------------------------------


def engaged_cutoff(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) - dt.timedelta(days=settings.WARMUP_ENGAGED_DAYS)


def engaged_first_sql(
    *, contact_alias: str = "c", now: dt.datetime | None = None
) -> tuple[str, list]:
    """An ORDER BY term (with its parameters) that sorts contacts who opened or clicked
    within WARMUP_ENGAGED_DAYS first (0) and the rest after (1), for raw claim queries
    that join contacts_contact as `contact_alias`."""
    if not contact_alias.isidentifier():
        raise ValueError(f"Not an SQL alias: {contact_alias!r}")
    term = (
        f"(CASE WHEN GREATEST({contact_alias}.last_opened_at, {contact_alias}.last_clicked_at)"
        " >= %s THEN 0 ELSE 1 END)"
    )
    return term, [engaged_cutoff(now)]


def engaged_first_annotation(*, prefix: str = "", now: dt.datetime | None = None) -> Case:
    """The same as an ORM expression: `.annotate(engaged_rank=...).order_by("engaged_rank",
    ...)` on contacts (prefix "") or on deliveries (prefix "contact__")."""
    cutoff = engaged_cutoff(now)
    recent = Q(**{f"{prefix}last_opened_at__gte": cutoff}) | Q(
        **{f"{prefix}last_clicked_at__gte": cutoff}
    )
    return Case(When(recent, then=Value(0)), default=Value(1), output_field=IntegerField())


# --- a campaign's warm-up, as its Delivery panel shows it --------------------------------

_HELD_FOR_WORDS = {"deferral": "deferrals", "bounce": "bounces", "complaint": "complaints"}


@dataclass(frozen=True)
class WarmupLine:
    """The warm-up limit that binds one provider's queued rows of a campaign: "Warming
    up: {attempted_today} of {cap} today to {provider}, the rest by {eta}"."""

    provider: str
    limit: str  # what binds: "ip" (the pool's warming IPs) or "domain" (a new sending domain)
    cap: int  # today's cap (summed over the warming IPs)
    attempted_today: int  # sent, deferred or bounced today: what the cap counts
    queued: int
    eta: dt.date | None  # the day the queued rows will have gone (None: never)
    held_for: list[str]  # the thresholds yesterday crossed: the ramp did not advance

    @property
    def provider_label(self) -> str:
        if self.provider in ("", "other"):
            return "other providers"
        return dict(PROVIDERS).get(self.provider, self.provider).split(" (")[0]

    @property
    def held_text(self) -> str:
        return " and ".join(_HELD_FOR_WORDS.get(reason, reason) for reason in self.held_for)


@dataclass(frozen=True)
class _Limit:
    """One limit on a provider today: its cap, what was taken, its caps from today on."""

    cap: int
    attempted: int
    ahead: Iterator[int | None]
    held_for: list[str]

    @property
    def room(self) -> int:
        return max(self.cap - self.attempted, 0)


def _limit(
    target: SendingIp | SendingDomain,
    caps: list[int],
    stats: Mapping[dt.date, DayStats],
    provider: str,
    today: dt.date,
) -> _Limit | None:
    cap = cap_today(
        ip_or_domain_state=target, schedule=caps, provider=provider, today=today, stats=stats
    )
    if cap is None:
        return None
    day = effective_warmup_day(started_on=target.warmup_started_on, today=today, daily_stats=stats)
    return _Limit(
        cap=cap,
        attempted=stats[today].attempted if today in stats else 0,
        ahead=caps_ahead(caps, day),
        held_for=is_held(today=today, daily_stats=stats),
    )


def _summed_ahead(iterators: list[Iterator[int | None]]) -> Iterator[int | None]:
    """Several IPs' caps day by day: their sum, until one has no cap (then None)."""
    for caps in zip(*iterators, strict=False):
        if None in caps:
            break
        yield sum(caps)
    yield None


def _summed(limits: list[_Limit | None]) -> _Limit | None:
    """The pool's warming IPs together: no cap when one of them has none."""
    if not limits or None in limits:
        return None
    return _Limit(
        cap=sum(limit.cap for limit in limits),
        attempted=sum(limit.attempted for limit in limits),
        ahead=_summed_ahead([limit.ahead for limit in limits]),
        held_for=sorted({reason for limit in limits for reason in limit.held_for}),
    )


def _rooms_ahead(limits: list[_Limit]) -> Iterator[int | None]:
    """Room today under every limit at once, then the smallest cap of each later day."""
    iterators = [limit.ahead for limit in limits]
    for iterator in iterators:
        next(iterator, None)  # today's cap: today has its room instead
    yield min(limit.room for limit in limits)
    while True:
        caps = [cap for cap in (next(iterator, None) for iterator in iterators) if cap is not None]
        if not caps:
            yield None
            return
        yield min(caps)


def campaign_warmup_lines(*, campaign: Campaign, today: dt.date) -> list[WarmupLine]:
    """Per provider of the campaign's queued rows, the warm-up limit that binds it today,
    as the claim-time shaper (sending/shaping.py) applies them: the pool's warming IPs
    together (none when the pool has an active IP in service, which takes any volume) and
    the campaign's sending domain while it is new; the smaller room wins. Providers
    without a cap are left out.

    A constant number of queries whatever the providers: queued rows per provider in one,
    then one stats query per warming IP and one for the domain.
    """
    # Imported here: the pipeline imports the shaper, which imports this module.
    from sending.pipeline import campaign_pool

    queued = dict(
        Delivery.objects.filter(campaign=campaign, state=Delivery.State.QUEUED)
        .values("provider")
        .annotate(rows=Count("pk"))
        .order_by()
        .values_list("provider", "rows")
    )
    if not queued:
        return []
    ip_targets: list[tuple[SendingIp, list[int], dict]] = []
    pool = campaign_pool(campaign)
    if pool is not None:
        in_service = list(
            SendingIp.objects.filter(pool=pool, is_active=True)
            .exclude(state=SendingIp.State.PAUSED)
            .select_related("pool__warmup_schedule")
        )
        if in_service and all(ip.state == SendingIp.State.WARMING for ip in in_service):
            caps = schedule_for(in_service[0])  # one pool, one schedule
            ip_targets = [
                (ip, caps, warmup_stats_for(ip_or_domain=ip, provider=None, today=today))
                for ip in in_service
            ]
    domain_target: tuple[SendingDomain, list[int], dict] | None = None
    if settings.WARMUP_NEW_DOMAINS:
        domain = sending_domain_for_from_address(
            workspace=campaign.workspace, address=campaign.from_email
        )
        if domain is not None and not domain.is_warmed_up:
            domain_target = (
                domain,
                schedule_for(domain),
                warmup_stats_for(ip_or_domain=domain, provider=None, today=today),
            )
    lines = []
    for provider, rows in sorted(queued.items()):
        limits: dict[str, _Limit] = {}
        if ip_targets:
            summed = _summed(
                [
                    _limit(ip, caps, stats.get(provider, {}), provider, today)
                    for ip, caps, stats in ip_targets
                ]
            )
            if summed is not None:
                limits["ip"] = summed
        if domain_target is not None:
            domain, caps, stats = domain_target
            found = _limit(domain, caps, stats.get(provider, {}), provider, today)
            if found is not None:
                limits["domain"] = found
        if not limits:
            continue
        kind, binding = min(limits.items(), key=lambda item: item[1].room)
        lines.append(
            WarmupLine(
                provider=provider,
                limit=kind,
                cap=binding.cap,
                attempted_today=binding.attempted,
                queued=rows,
                eta=warmup_eta(
                    remaining=rows, today=today, caps=_rooms_ahead(list(limits.values()))
                ),
                held_for=binding.held_for,
            )
        )
    return lines
