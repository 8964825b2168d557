"""What a workspace may send now: the kill switches, hourly and daily quotas, campaign
approval, and the workspace's reputation. Reads only; the writes are in
sending/services/policy.py.

Sending workers ask `workspace_allowance` (through `policy_claim_limit`, a claim limit of
sending/pipeline.py) before every claim. The switches, the policy row and the quota count
are read from the database at most once per SENDING_POLICY_CACHE_SECONDS per process and
workspace, so a switch flipped anywhere stops new claims everywhere within that time, and a
busy send costs the database a few small queries every couple of seconds, not one per chunk.

Quotas count deliveries sent in the window (rows refused during the SMTP session carry no
sent_at and are not counted) plus those claimed or in flight now, straight from Delivery
rows: the count is right after any restart (Redis keeps nothing here). Between two reads a
process adds what it granted itself, so one process never overshoots; processes that read
at the same time may together overshoot by at most one chunk each, corrected at the next
read. Windows are UTC clock hours and UTC days. A workspace with no SendingPolicy row, or
a quota of 0, has no quota.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from accounts.models import Workspace
from campaigns.models import Campaign
from sending.models import Delivery, PlatformSwitch, SendingPolicy
from sending.selectors import feedback_rates

State = Delivery.State

# The mailbox providers' lines (Gmail's and Yahoo's sender guidelines): keep spam complaints
# under 0.1%, never reach 0.3%. Bounce lines are the industry's usual ones.
COMPLAINT_WARNING_PERCENT = 0.1
COMPLAINT_BAD_PERCENT = 0.3
BOUNCE_WARNING_PERCENT = 2.0
BOUNCE_BAD_PERCENT = 5.0
REPUTATION_DAYS = 30

# The clocks: the caches' (monotonic) and the quota windows' (tests replace them).
clock = time.monotonic
wall_clock = timezone.now


# --- per-process caches -----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyFacts:
    """The parts of a SendingPolicy row the claim path needs (None: no row)."""

    daily_quota: int
    hourly_quota: int
    requires_approval: bool
    is_sending_stopped: bool
    stopped_reason: str


@dataclass
class _Usage:
    read_at: float
    hour_start: dt.datetime
    hour_count: int
    day_count: int
    granted: int = 0  # granted by this process since the read


_platform: tuple[float, bool, str] | None = None
_policies: dict[int, tuple[float, PolicyFacts | None]] = {}
_usage: dict[int, _Usage] = {}
_campaign_workspace: dict[int, int] = {}


def policy_cache_clear() -> None:
    """Forget what this process read (a switch flipped here takes effect here at once)."""
    global _platform
    _platform = None
    _policies.clear()
    _usage.clear()


def _fresh(read_at: float) -> bool:
    return clock() - read_at < settings.SENDING_POLICY_CACHE_SECONDS


def platform_stop_reason() -> str | None:
    """The platform kill switch: its reason while on (may be ""), None while off."""
    global _platform
    if _platform is None or not _fresh(_platform[0]):
        switch = PlatformSwitch.objects.order_by("pk").first()
        stopped = switch is not None and switch.is_sending_stopped
        _platform = (clock(), stopped, switch.reason if switch else "")
    return _platform[2] if _platform[1] else None


def _facts(workspace_id: int) -> PolicyFacts | None:
    cached = _policies.get(workspace_id)
    if cached is not None and _fresh(cached[0]):
        return cached[1]
    row = (
        SendingPolicy.objects.filter(workspace_id=workspace_id)
        .values_list(
            "daily_quota",
            "hourly_quota",
            "requires_approval",
            "is_sending_stopped",
            "stopped_reason",
        )
        .first()
    )
    facts = PolicyFacts(*row) if row is not None else None
    _policies[workspace_id] = (clock(), facts)
    return facts


def sending_stop_reason(*, workspace_id: int) -> str | None:
    """Why nothing of this workspace may be claimed now, or None (cached)."""
    platform = platform_stop_reason()
    if platform is not None:
        return f"Sending is stopped on the platform{': ' + platform if platform else '.'}"
    facts = _facts(workspace_id)
    if facts is not None and facts.is_sending_stopped:
        return f"Sending stopped{': ' + facts.stopped_reason if facts.stopped_reason else '.'}"
    return None


# --- quotas ------------------------------------------------------------------------------------


def _windows(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    now = now.astimezone(dt.UTC)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    return hour_start, hour_start.replace(hour=0)


def _handed_over_counts(
    workspace_id: int, hour_start: dt.datetime, day_start: dt.datetime
) -> tuple[int, int]:
    """(this hour, today): deliveries sent in the window plus those being sent now, in one
    aggregate. Both branches can be served by indexes: the lease index (claimed, in
    flight) and one on (workspace, sent_at)."""
    in_progress = Q(state__in=[State.CLAIMED, State.IN_FLIGHT])
    counts = (
        Delivery.objects.filter(workspace_id=workspace_id)
        .filter(Q(sent_at__gte=day_start) | in_progress)
        .aggregate(
            hour=Count("pk", filter=Q(sent_at__gte=hour_start) | in_progress),
            day=Count("pk"),
        )
    )
    return counts["hour"], counts["day"]


@dataclass(frozen=True)
class QuotaUsage:
    """A workspace's quotas (0: none) and what it has sent in this hour and today."""

    daily_quota: int
    hourly_quota: int
    sent_this_hour: int
    sent_today: int
    hour_start: dt.datetime
    day_start: dt.datetime

    @property
    def remaining(self) -> int | None:
        """How many more may go now; None: no quota."""
        left = [
            quota - used
            for quota, used in (
                (self.hourly_quota, self.sent_this_hour),
                (self.daily_quota, self.sent_today),
            )
            if quota
        ]
        return max(min(left), 0) if left else None

    @property
    def reached(self) -> str:
        """ "daily", "hourly" or "" (the daily quota first: it lasts longer)."""
        if self.daily_quota and self.sent_today >= self.daily_quota:
            return "daily"
        if self.hourly_quota and self.sent_this_hour >= self.hourly_quota:
            return "hourly"
        return ""

    @property
    def resumes_at(self) -> dt.datetime | None:
        if self.reached == "daily":
            return self.day_start + dt.timedelta(days=1)
        if self.reached == "hourly":
            return self.hour_start + dt.timedelta(hours=1)
        return None


def workspace_quota_usage(
    *, workspace_id: int, now: dt.datetime | None = None
) -> QuotaUsage | None:
    """Quotas (as the claim limit sees them, cached) and counts read now; None when the
    workspace has no policy."""
    policy = _facts(workspace_id)
    if policy is None:
        return None
    hour_start, day_start = _windows(now or wall_clock())
    hour, day = _handed_over_counts(workspace_id, hour_start, day_start)
    return QuotaUsage(
        daily_quota=policy.daily_quota,
        hourly_quota=policy.hourly_quota,
        sent_this_hour=hour,
        sent_today=day,
        hour_start=hour_start,
        day_start=day_start,
    )


def _quota_allowance(workspace_id: int, facts: PolicyFacts, wanted: int, now: dt.datetime) -> int:
    if not facts.daily_quota and not facts.hourly_quota:
        return wanted
    hour_start, day_start = _windows(now)
    usage = _usage.get(workspace_id)
    if usage is None or not _fresh(usage.read_at) or usage.hour_start != hour_start:
        hour, day = _handed_over_counts(workspace_id, hour_start, day_start)
        usage = _Usage(read_at=clock(), hour_start=hour_start, hour_count=hour, day_count=day)
        _usage[workspace_id] = usage
    allowed = wanted
    if facts.hourly_quota:
        allowed = min(allowed, facts.hourly_quota - usage.hour_count - usage.granted)
    if facts.daily_quota:
        allowed = min(allowed, facts.daily_quota - usage.day_count - usage.granted)
    allowed = max(allowed, 0)
    usage.granted += allowed
    return allowed


def workspace_allowance(*, workspace_id: int, wanted: int, now: dt.datetime | None = None) -> int:
    """How many of `wanted` messages of this workspace may be claimed now: 0 while a kill
    switch is on, else at most what is left of this hour's and today's quota. What it
    grants counts against the quota (call it with the number about to be claimed). The
    per-IP and per-provider claims call this too: it knows nothing of campaigns."""
    if wanted <= 0 or sending_stop_reason(workspace_id=workspace_id) is not None:
        return 0
    facts = _facts(workspace_id)
    if facts is None:
        return wanted
    return _quota_allowance(workspace_id, facts, wanted, now or wall_clock())


def policy_claim_limit(campaign_id: int, wanted: int) -> int:
    """The claim limit registered in sending.pipeline.claim_limits."""
    workspace_id = _campaign_workspace.get(campaign_id)
    if workspace_id is None:
        workspace_id = (
            Campaign.objects.filter(pk=campaign_id).values_list("workspace_id", flat=True).first()
        )
        if workspace_id is None:
            return wanted  # gone: the claim finds nothing anyway
        _campaign_workspace[campaign_id] = workspace_id
    return workspace_allowance(workspace_id=workspace_id, wanted=wanted)


# --- approval ---------------------------------------------------------------------------------


def campaign_awaits_approval(*, campaign: Campaign) -> bool:
    """A campaign of a workspace whose policy requires approval, not approved yet."""
    if campaign.approved_at is not None:
        return False
    return SendingPolicy.objects.filter(
        workspace_id=campaign.workspace_id, requires_approval=True
    ).exists()


def campaign_list_awaiting_approval():
    """Scheduled or draft campaigns that will not start until an operator approves them."""
    return (
        Campaign.objects.filter(
            status__in=[Campaign.Status.SCHEDULED, Campaign.Status.DRAFT],
            approved_at__isnull=True,
            archived_at__isnull=True,
            workspace__in=SendingPolicy.objects.filter(requires_approval=True).values(
                "workspace_id"
            ),
        )
        .select_related("workspace")
        .order_by("scheduled_at", "pk")
    )


# --- what the campaign page says --------------------------------------------------------------


def campaign_send_notice(*, campaign: Campaign, now: dt.datetime | None = None) -> str:
    """One line for the campaign's page when the policy holds its mail back, else ""."""
    if campaign.status not in (Campaign.Status.SCHEDULED, Campaign.Status.SENDING):
        return ""
    if campaign.status == Campaign.Status.SCHEDULED:
        if campaign_awaits_approval(campaign=campaign):
            return "Waiting for approval: our team reviews a new workspace's first campaigns."
        return ""
    platform = PlatformSwitch.objects.order_by("pk").first()
    if platform is not None and platform.is_sending_stopped:
        return "Sending is paused on the platform; it resumes when our team allows it again."
    policy = SendingPolicy.objects.filter(workspace_id=campaign.workspace_id).first()
    if policy is not None and policy.is_sending_stopped:
        reason = policy.stopped_reason or "contact support"
        return f"Sending stopped: {reason}"
    usage = workspace_quota_usage(workspace_id=campaign.workspace_id, now=now)
    if usage is not None and usage.reached:
        return f"{usage.reached.capitalize()} quota reached: resumes at {_local(usage, campaign)}."
    return ""


def _local(usage: QuotaUsage, campaign: Campaign) -> str:
    from zoneinfo import ZoneInfo

    at = usage.resumes_at.astimezone(ZoneInfo(campaign.workspace.time_zone or "UTC"))
    return f"{at:%Y-%m-%d %H:%M} ({at.tzname()})"


# --- reputation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reputation:
    """A workspace's last 30 days against the mailbox providers' lines."""

    sent: int
    bounce_percent: float
    complaint_percent: float
    level: str  # good | warning | bad
    days: int = REPUTATION_DAYS

    @property
    def label(self) -> str:
        return {"good": "Good", "warning": "At risk", "bad": "Poor"}[self.level]


def reputation_level(*, bounce_percent: float, complaint_percent: float) -> str:
    if complaint_percent >= COMPLAINT_BAD_PERCENT or bounce_percent >= BOUNCE_BAD_PERCENT:
        return "bad"
    if complaint_percent >= COMPLAINT_WARNING_PERCENT or bounce_percent >= BOUNCE_WARNING_PERCENT:
        return "warning"
    return "good"


def workspace_reputation(*, workspace: Workspace, now: dt.datetime | None = None) -> Reputation:
    """30-day bounce and complaint rates (sending.selectors.feedback_rates) and a level."""
    since = (now or wall_clock()) - dt.timedelta(days=REPUTATION_DAYS)
    rates = feedback_rates(workspace=workspace, since=since)
    bounce, complaint = rates.bounce_rate * 100, rates.complaint_rate * 100
    return Reputation(
        sent=rates.sent,
        bounce_percent=round(bounce, 3),
        complaint_percent=round(complaint, 3),
        level=reputation_level(bounce_percent=bounce, complaint_percent=complaint),
    )
