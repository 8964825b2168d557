"""The workspace dashboard's deliverability panel: the last 30 days' volume and rates against
the mailbox providers' lines, the authentication of the sending domains, and blocklist
listings. The dashboard (accounts) loads it by URL name, registered in apps.py.

Figures come from `WorkspaceDay` rows (one a UTC day, written by the roll-up task), so the
panel costs a handful of queries whatever the volume. Their `counts` hold the keys in
`COUNT_KEYS`; a missing key reads as 0, a missing day as a day without mail, except today
and yesterday, which the roll-up may not have reached yet: while the workspace sent mail
in them and their rows are missing, the panel says they are being computed.
"""

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.models import Workspace
from accounts.scoping import WorkspaceRequest, workspace_view
from sending.models import Delivery, DnsblListing, SendingDomain
from sending.models.domains import RecordState
from sending.policy import (
    BOUNCE_BAD_PERCENT,
    BOUNCE_WARNING_PERCENT,
    COMPLAINT_BAD_PERCENT,
    COMPLAINT_WARNING_PERCENT,
)
from sending.selectors import dnsbl_listing_list_open_for_workspace, sending_domain_list
from tracking.models import WorkspaceDay

WINDOW_DAYS = 30
# What a WorkspaceDay's counts hold: messages handed over (accepted or refused), delivered
# (accepted and not bounced since), bounced, complained, and recipients who opened or
# clicked (all, and by people: machine opens and link scanners left out).
COUNT_KEYS = (
    "sent",
    "delivered",
    "bounced",
    "complained",
    "unique_opens",
    "unique_human_opens",
    "unique_clicks",
    "unique_human_clicks",
)
AUTH_RECORDS = (("dkim", "DKIM"), ("spf", "SPF"), ("dmarc", "DMARC"))
SPARK_BAR_WIDTH, SPARK_GAP, SPARK_HEIGHT = 8, 2, 40


@dataclass(frozen=True)
class Health:
    """A rate against its lines: good (under the warning line), warning, bad, or none (no
    mail to judge)."""

    level: str
    text: str

    @property
    def badge_class(self) -> str:
        return {
            "good": "badge-record-pass",
            "warning": "badge-domain-pending",
            "bad": "badge-domain-failing",
        }.get(self.level, "badge-record-unknown")

    @property
    def label(self) -> str:
        return {"good": "Healthy", "warning": "At risk", "bad": "Too high"}.get(
            self.level, "No mail"
        )


@dataclass(frozen=True)
class Bar:
    day: dt.date
    sent: int
    x: int
    y: int
    height: int


@dataclass(frozen=True)
class Sparkline:
    bars: list[Bar]
    width: int
    height: int
    title: str


@dataclass(frozen=True)
class DomainAuth:
    name: str
    status: str
    status_label: str
    records: list[tuple[str, bool]]  # (label, passes), DKIM, SPF and DMARC

    @property
    def is_authenticated(self) -> bool:
        return all(passes for _, passes in self.records)


@dataclass(frozen=True)
class WorkspaceHealth:
    first_day: dt.date
    last_day: dt.date
    totals: dict[str, int]
    bounce_percent: float | None
    complaint_percent: float | None
    open_percent: float | None
    click_percent: float | None
    bounce_health: Health
    complaint_health: Health
    sparkline: Sparkline
    computing_days: list[dt.date]
    domains: list[DomainAuth]
    listings: list[DnsblListing]


def _percent(part: int, whole: int) -> Fraction | None:
    return Fraction(part * 100, whole) if whole else None


def complaint_health(percent: Fraction | None) -> Health:
    """Gmail's and Yahoo's sender lines: complaints under 0.1%, never 0.3%."""
    if percent is None:
        return Health("none", "No mail sent in these 30 days.")
    if percent >= Fraction(str(COMPLAINT_BAD_PERCENT)):
        return Health(
            "bad",
            f"At or over {COMPLAINT_BAD_PERCENT}%: Gmail and Yahoo filter or refuse mail "
            "from senders this many recipients report as spam.",
        )
    if percent >= Fraction(str(COMPLAINT_WARNING_PERCENT)):
        return Health(
            "warning",
            f"At or over {COMPLAINT_WARNING_PERCENT}%: keep complaints under it, and never "
            f"let them reach {COMPLAINT_BAD_PERCENT}%.",
        )
    return Health("good", f"Under the mailbox providers' {COMPLAINT_WARNING_PERCENT}% line.")


def bounce_health(percent: Fraction | None) -> Health:
    """The usual bounce lines: under 2% is healthy, 5% and over harms the reputation."""
    if percent is None:
        return Health("none", "No mail sent in these 30 days.")
    if percent >= Fraction(str(BOUNCE_BAD_PERCENT)):
        return Health(
            "bad",
            f"At or over {BOUNCE_BAD_PERCENT:g}%: remove addresses that bounce and check "
            "where the list came from.",
        )
    if percent >= Fraction(str(BOUNCE_WARNING_PERCENT)):
        return Health(
            "warning", f"At or over {BOUNCE_WARNING_PERCENT:g}%: clean the list before it grows."
        )
    return Health("good", f"Under {BOUNCE_WARNING_PERCENT:g}%.")


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b}"


def sparkline(volume: list[tuple[dt.date, int]]) -> Sparkline:
    """One bar a day, scaled to the busiest day; a day with any mail shows at least 1px."""
    peak = max((sent for _, sent in volume), default=0)
    step = SPARK_BAR_WIDTH + SPARK_GAP
    bars = []
    for index, (day, sent) in enumerate(volume):
        height = max(round(sent * SPARK_HEIGHT / peak), 1) if sent else 0
        bars.append(Bar(day=day, sent=sent, x=index * step, y=SPARK_HEIGHT - height, height=height))
    total = sum(sent for _, sent in volume)
    first, last = volume[0][0], volume[-1][0]
    if total:
        peak_day = next(day for day, sent in volume if sent == peak)
        title = (
            f"Messages sent per day from {_day(first)} to {_day(last)} {last.year}: "
            f"{total} in all, most on {_day(peak_day)} ({peak})."
        )
    else:
        title = f"No messages sent from {_day(first)} to {_day(last)} {last.year}."
    return Sparkline(
        bars=bars, width=len(volume) * step - SPARK_GAP, height=SPARK_HEIGHT, title=title
    )


def _domain_auth(domain: SendingDomain) -> DomainAuth:
    return DomainAuth(
        name=domain.display_name,
        status=domain.status,
        status_label=domain.get_status_display(),
        records=[
            (label, domain.record_state(key) == RecordState.PASS) for key, label in AUTH_RECORDS
        ],
    )


def workspace_health(*, workspace: Workspace, today: dt.date) -> WorkspaceHealth:
    """The 30 days up to `today` (UTC) of one workspace, and its domains and listings now."""
    first_day = today - dt.timedelta(days=WINDOW_DAYS - 1)
    rows = dict(
        WorkspaceDay.objects.for_workspace(workspace)
        .filter(day__gte=first_day, day__lte=today)
        .values_list("day", "counts")
    )
    totals = dict.fromkeys(COUNT_KEYS, 0)
    for counts in rows.values():
        for key in COUNT_KEYS:
            totals[key] += int(counts.get(key) or 0)
    days = [first_day + dt.timedelta(days=offset) for offset in range(WINDOW_DAYS)]
    volume = [(day, int((rows.get(day) or {}).get("sent") or 0)) for day in days]

    computing_days = [day for day in (today - dt.timedelta(days=1), today) if day not in rows]
    if computing_days:
        since = dt.datetime.combine(computing_days[0], dt.time(), tzinfo=dt.UTC)
        has_mail = Delivery.objects.for_workspace(workspace).filter(sent_at__gte=since).exists()
        if not has_mail:
            computing_days = []

    bounce = _percent(totals["bounced"], totals["sent"])
    complaint = _percent(totals["complained"], totals["sent"])
    opened = _percent(totals["unique_human_opens"], totals["delivered"])
    clicked = _percent(totals["unique_human_clicks"], totals["delivered"])
    return WorkspaceHealth(
        first_day=first_day,
        last_day=today,
        totals=totals,
        bounce_percent=None if bounce is None else float(bounce),
        complaint_percent=None if complaint is None else float(complaint),
        open_percent=None if opened is None else float(opened),
        click_percent=None if clicked is None else float(clicked),
        bounce_health=bounce_health(bounce),
        complaint_health=complaint_health(complaint),
        sparkline=sparkline(volume),
        computing_days=computing_days,
        domains=[_domain_auth(domain) for domain in sending_domain_list(workspace=workspace)],
        listings=list(dnsbl_listing_list_open_for_workspace(workspace=workspace)),
    )


@workspace_view()
@require_GET
def dashboard_panel(request: WorkspaceRequest) -> HttpResponse:
    """The panel's fragment, loaded by the dashboard with hx-get."""
    health = workspace_health(workspace=request.workspace, today=timezone.now().date())
    return render(request, "tracking/_dashboard_panel.html", {"health": health})
