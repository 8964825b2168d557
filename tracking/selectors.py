"""Reads of the reports: a campaign's report from its roll-up and counters, the list of
sent campaigns with their headline figures, and the report's tables as rows (CSV)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Workspace
from campaigns.models import AbTest, Campaign
from campaigns.selectors import ab_test_get
from sending.models.shaping import PROVIDERS
from tracking import charts
from tracking.models import CampaignRollup, HourlyActivity, LinkActivity
from tracking.rollups import BOUNCE_CLASSES, campaign_rollup_compute

REPORTED_STATUSES = (
    Campaign.Status.SENDING,
    Campaign.Status.PAUSED,
    Campaign.Status.SENT,
    Campaign.Status.CANCELLED,
)
TIMELINE_DAYS = 7
HOURLY_UP_TO = dt.timedelta(hours=48)  # longer timelines show 6-hour buckets
LINKS_SHOWN = 100
PROVIDER_LABELS = dict(PROVIDERS) | {"": "Not known"}
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Rate:
    """part / whole, shown as a percentage ("—" when there is nothing to divide by)."""

    part: int
    whole: int

    @property
    def value(self) -> float | None:
        return self.part / self.whole if self.whole else None

    @property
    def csv(self) -> str:
        return "" if self.value is None else f"{self.value:.4f}"

    def __str__(self) -> str:
        if self.value is None:
            return "—"
        percent = self.value * 100
        return f"{percent:.0f}%" if percent in (0, 100) else f"{percent:.1f}%"


def report_figures(counts: dict) -> dict:
    """Counts with their rates: delivery and bounces over the messages handed over; opens,
    clicks, unsubscribes and complaints over those delivered; click-to-open over opens."""
    c = {key: value for key, value in counts.items() if value is not None}
    get = c.get
    handed_over, delivered = get("handed_over", 0), get("delivered", 0)
    figures = dict(c)
    figures |= {
        "delivered_rate": Rate(get("delivered", 0), handed_over),
        "bounce_rate": Rate(get("bounced", 0), handed_over),
        "open_rate": Rate(get("unique_opens", 0), delivered),
        "human_open_rate": Rate(get("unique_human_opens", 0), delivered),
        "click_rate": Rate(get("unique_clicks", 0), delivered),
        "human_click_rate": Rate(get("unique_human_clicks", 0), delivered),
        "click_to_open": Rate(get("unique_clicks", 0), get("unique_opens", 0)),
        "human_click_to_open": Rate(get("unique_human_clicks", 0), get("unique_human_opens", 0)),
        "unsubscribe_rate": Rate(get("unsubscribed", 0), delivered),
        "complaint_rate": Rate(get("complained", 0), delivered),
    }
    figures |= {
        f"bounce_rate_{name}": Rate(get(f"bounced_{name}", 0), handed_over)
        for name in BOUNCE_CLASSES
    }
    return figures


# --- The Reports landing --------------------------------------------------------------------


def report_campaign_list(*, workspace: Workspace) -> QuerySet[Campaign]:
    """The workspace's campaigns that have gone out (or are going), newest send first."""
    return (
        Campaign.objects.for_workspace(workspace)
        .filter(status__in=REPORTED_STATUSES, send__isnull=False)
        .select_related("send")
        .only("pk", "name", "subject", "status", "send__started_at", "send__finished_at")
        .order_by("-send__started_at", "-pk")
    )


def report_headlines(*, workspace: Workspace, campaigns: Sequence[Campaign]) -> dict[int, dict]:
    """The roll-up figures of these campaigns by id (a campaign not rolled up yet is left
    out: the roll-up task computes it within a minute)."""
    rollups = CampaignRollup.objects.for_workspace(workspace).filter(
        campaign_id__in=[campaign.pk for campaign in campaigns]
    )
    return {rollup.campaign_id: report_figures(rollup.counts) for rollup in rollups}


# --- A campaign's report --------------------------------------------------------------------


@dataclass(frozen=True)
class Breakdown:
    """One row of the provider or variant table."""

    key: str
    label: str
    figures: dict
    subject: str = ""
    is_winner: bool = False


@dataclass(frozen=True)
class Timeline:
    bucket: dt.timedelta
    starts: list[dt.datetime]
    rows: list[dict]  # per bucket: opens, human_opens, clicks, human_clicks
    opens_chart: str = ""
    clicks_chart: str = ""

    @property
    def bucket_label(self) -> str:
        hours = int(self.bucket / HOUR)
        return "hour" if hours == 1 else f"{hours} hours"

    @property
    def has_activity(self) -> bool:
        return any(row["opens"] or row["clicks"] for row in self.rows)


@dataclass
class CampaignReport:
    campaign: Campaign
    rollup: CampaignRollup | None
    now: dt.datetime
    figures: dict = field(default_factory=dict)
    providers: list[Breakdown] = field(default_factory=list)
    variants: list[Breakdown] = field(default_factory=list)
    ab_test: AbTest | None = None
    links: list[LinkActivity] = field(default_factory=list)
    has_more_links: bool = False
    timeline: Timeline | None = None

    @property
    def is_sent(self) -> bool:
        return bool(self.figures.get("deliveries"))

    @property
    def age_seconds(self) -> int:
        return int((self.now - self.rollup.computed_at).total_seconds()) if self.rollup else 0

    @property
    def first_sent_at(self) -> dt.datetime | None:
        value = self.figures.get("first_sent_at")
        return dt.datetime.fromisoformat(value) if value else None


def campaign_report(
    *, campaign: Campaign, now: dt.datetime | None = None, time_zone: str = "UTC"
) -> CampaignReport:
    """A campaign's report in a fixed number of queries, whatever its size: its roll-up
    (computed here when the task has not yet), its A/B test, the timeline's hours and its
    most clicked links. Drafts and scheduled campaigns have none."""
    now = now or timezone.now()
    report = CampaignReport(campaign=campaign, rollup=None, now=now)
    if campaign.status not in REPORTED_STATUSES:
        return report
    rollup = CampaignRollup.objects.filter(campaign=campaign).first()
    if rollup is None:
        rollup = campaign_rollup_compute(campaign_id=campaign.pk, now=now)
    report.rollup = rollup
    report.figures = report_figures(rollup.counts)
    report.providers = sorted(
        (
            Breakdown(key=key, label=PROVIDER_LABELS.get(key, key), figures=report_figures(row))
            for key, row in rollup.by_provider.items()
        ),
        key=lambda row: (-row.figures.get("deliveries", 0), row.label),
    )
    if rollup.by_variant:
        report.ab_test = ab_test_get(campaign=campaign)
        report.variants = _variant_rows(rollup.by_variant, report.ab_test)
    links = list(
        LinkActivity.objects.filter(campaign=campaign).order_by("-clicks", "url")[: LINKS_SHOWN + 1]
    )
    report.links, report.has_more_links = links[:LINKS_SHOWN], len(links) > LINKS_SHOWN
    report.timeline = _timeline(campaign, report.first_sent_at, now, time_zone)
    return report


def _variant_rows(by_variant: dict, ab_test: AbTest | None) -> list[Breakdown]:
    winner_id = ab_test.winner_id if ab_test is not None else None
    rows = []
    for key, row in by_variant.items():
        if key:
            label, subject = f"Variant {row.get('label') or key}", row.get("subject", "")
            is_winner = winner_id is not None and int(key) == winner_id
        else:  # the rest of the audience, sent after the test
            label, subject, is_winner = "Rest of the audience", "", False
        rows.append(
            Breakdown(
                key=key,
                label=label,
                subject=subject,
                figures=report_figures(row),
                is_winner=is_winner,
            )
        )
    return sorted(rows, key=lambda row: (not row.key, row.label))


def _hour_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _timeline(
    campaign: Campaign, first_sent_at: dt.datetime | None, now: dt.datetime, time_zone: str
) -> Timeline:
    """The first TIMELINE_DAYS days after the send, per hour (or 6 hours when longer than
    HOURLY_UP_TO): opens and clicks, all and by people."""
    hours = HourlyActivity.objects.filter(campaign=campaign).order_by("hour")
    if first_sent_at is not None:
        start = _hour_floor(first_sent_at)
        hours = hours.filter(hour__gte=start, hour__lt=start + dt.timedelta(days=TIMELINE_DAYS))
        rows = list(hours)
    else:  # nothing handed over yet has a time: from the first hour with activity
        rows = list(hours[: TIMELINE_DAYS * 24])
        start = rows[0].hour if rows else _hour_floor(now)
        rows = [row for row in rows if row.hour < start + dt.timedelta(days=TIMELINE_DAYS)]
    end = min(start + dt.timedelta(days=TIMELINE_DAYS), _hour_floor(now) + HOUR)
    end = max(end, start + HOUR)
    bucket = HOUR if end - start <= HOURLY_UP_TO else 6 * HOUR
    count = -(-(end - start) // bucket)
    starts = [start + n * bucket for n in range(count)]
    sums = [dict.fromkeys(("opens", "human_opens", "clicks", "human_clicks"), 0) for _ in starts]
    for row in rows:
        index = int((row.hour - start) // bucket)
        if 0 <= index < count:
            for key in sums[index]:
                sums[index][key] += getattr(row, key)
    for at, row in zip(starts, sums, strict=True):
        row["start"] = at
    tz = zoneinfo.ZoneInfo(time_zone)
    return Timeline(
        bucket=bucket,
        starts=starts,
        rows=sums,
        opens_chart=charts.timeline_svg(
            title="Opens",
            starts=starts,
            bucket=bucket,
            series=[
                charts.Series("All opens", [row["opens"] for row in sums], "total"),
                charts.Series("By people", [row["human_opens"] for row in sums], "human"),
            ],
            tz=tz,
        ),
        clicks_chart=charts.timeline_svg(
            title="Clicks",
            starts=starts,
            bucket=bucket,
            series=[
                charts.Series("All clicks", [row["clicks"] for row in sums], "total"),
                charts.Series("By people", [row["human_clicks"] for row in sums], "human"),
            ],
            tz=tz,
        ),
    )


# --- The report's tables as rows (CSV export) -----------------------------------------------

REPORT_TABLES = ("summary", "links", "providers", "variants", "timeline")

# (label, count key, rate key or "", what the rate is of)
SUMMARY_ROWS = [
    ("Deliveries", "deliveries", "", ""),
    ("Handed over", "handed_over", "", ""),
    ("Delivered", "delivered", "delivered_rate", "handed over"),
    ("Bounced", "bounced", "bounce_rate", "handed over"),
    *(
        (f"Bounced ({name})", f"bounced_{name}", f"bounce_rate_{name}", "handed over")
        for name in BOUNCE_CLASSES
    ),
    ("Deferred now", "deferred", "", ""),
    ("Failed", "failed", "", ""),
    ("Outcome unknown", "outcome_unknown", "", ""),
    ("Not sent yet", "pending", "", ""),
    ("Skipped", "skipped", "", ""),
    ("Unique opens", "unique_opens", "open_rate", "delivered"),
    ("Unique opens by people", "unique_human_opens", "human_open_rate", "delivered"),
    ("Opens", "opens", "", ""),
    ("Opens by people", "human_opens", "", ""),
    ("Unique clicks", "unique_clicks", "click_rate", "delivered"),
    ("Unique clicks by people", "unique_human_clicks", "human_click_rate", "delivered"),
    ("Clicks", "clicks", "", ""),
    ("Clicks by people", "human_clicks", "", ""),
    ("Click-to-open", "unique_clicks", "click_to_open", "unique opens"),
    ("Click-to-open by people", "unique_human_clicks", "human_click_to_open", "unique opens"),
    ("Unsubscribed", "unsubscribed", "unsubscribe_rate", "delivered"),
    ("Complaints", "complained", "complaint_rate", "delivered"),
]
_BREAKDOWN_KEYS = (
    "deliveries",
    "handed_over",
    "delivered",
    "bounced",
    "complained",
    "unique_opens",
    "unique_human_opens",
    "unique_clicks",
    "unique_human_clicks",
    "opens",
    "human_opens",
    "clicks",
    "human_clicks",
)
_BREAKDOWN_RATES = ("open_rate", "human_open_rate", "click_rate", "human_click_rate")
_HOUR_KEYS = (
    "opens",
    "human_opens",
    "clicks",
    "human_clicks",
    "unique_opens",
    "unique_human_opens",
    "unique_clicks",
    "unique_human_clicks",
)


def report_table(*, report: CampaignReport, table: str) -> tuple[list[str], list[list]]:
    """One table of the report as a header and rows; links and timeline in full (every
    link, every hour), not just what the page shows."""
    figures = report.figures
    if table == "summary":
        return ["figure", "count", "rate", "rate_of"], [
            [
                label,
                figures.get(key, 0),
                figures[rate].csv if rate and rate in figures else "",
                base,
            ]
            for label, key, rate, base in SUMMARY_ROWS
        ]
    if table == "links":
        links = LinkActivity.objects.filter(campaign=report.campaign).order_by("-clicks", "url")
        return ["url", "clicks", "human_clicks", "unique_clicks", "unique_human_clicks"], [
            [
                link.url,
                link.clicks,
                link.human_clicks,
                link.unique_clicks,
                link.unique_human_clicks,
            ]
            for link in links
        ]
    if table in ("providers", "variants"):
        rows = report.providers if table == "providers" else report.variants
        head = ["provider"] if table == "providers" else ["variant", "subject", "winner"]
        return [*head, *_BREAKDOWN_KEYS, *_BREAKDOWN_RATES], [
            [
                *(
                    [row.key or "unknown"]
                    if table == "providers"
                    else [row.label, row.subject, "yes" if row.is_winner else ""]
                ),
                *(row.figures.get(key, 0) for key in _BREAKDOWN_KEYS),
                *(row.figures[rate].csv for rate in _BREAKDOWN_RATES),
            ]
            for row in rows
        ]
    if table == "timeline":
        hours = HourlyActivity.objects.filter(campaign=report.campaign).order_by("hour")
        return ["hour_utc", *_HOUR_KEYS], [
            [hour.hour.astimezone(dt.UTC).isoformat(), *(getattr(hour, key) for key in _HOUR_KEYS)]
            for hour in hours
        ]
    raise ValueError(f"No such table: {table}")
