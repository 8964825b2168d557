"""When a campaign starts: scheduling, rescheduling, unscheduling and cancelling.

Times are stored in UTC; marketers choose them in the workspace's time zone, through
`local_to_utc`. The Delivery issue's periodic task starts what `campaign_list_due` returns.
Every change locks the campaign's row, so two clicks (or a click and that task) cannot race.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User
from campaigns.checks import presend_checks
from campaigns.models import Campaign

# A time picked a moment ago may have passed by the time the form arrives.
PAST_SLACK = timedelta(minutes=1)
MAX_AHEAD = timedelta(days=365)
_SCHEDULABLE = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)


@dataclass(frozen=True)
class WallTime:
    """A wall-clock time of a zone, resolved to UTC."""

    utc: datetime
    local: datetime  # aware, in the zone
    is_ambiguous: bool = False  # the clocks showed this time twice; the first one is used

    @property
    def note(self) -> str:
        if not self.is_ambiguous:
            return ""
        return (
            f"{self.local:%H:%M} happens twice that night in {self.local.tzinfo} (the clocks "
            f"go back); the first time ({self.local:%Z}, UTC{_offset(self.local)}) is used."
        )


def _offset(moment: datetime) -> str:
    minutes = int(moment.utcoffset().total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def local_to_utc(*, local: datetime, time_zone: str) -> WallTime:
    """A naive wall time in `time_zone` as UTC; refuses a time the clocks skip over."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ApplicationError(f"Unknown time zone “{time_zone}”.") from error
    wall = local.replace(tzinfo=None, second=0, microsecond=0)
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    utc = first.astimezone(UTC)
    # A time in the spring-forward gap does not survive the round trip through UTC.
    if utc.astimezone(zone).replace(tzinfo=None) != wall:
        raise ApplicationError(
            f"{wall:%Y-%m-%d %H:%M} does not exist in {time_zone}: the clocks jump forward "
            "over it that night. Choose another time."
        )
    is_ambiguous = first.utcoffset() != second.utcoffset()
    return WallTime(utc=utc, local=utc.astimezone(zone), is_ambiguous=is_ambiguous)


def _locked(campaign: Campaign) -> Campaign:
    # Only the campaign's row is locked; its workspace and template are read along.
    return (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("workspace", "template")
        .get(pk=campaign.pk)
    )


def _copy_state(source: Campaign, target: Campaign) -> None:
    target.status, target.scheduled_at = source.status, source.scheduled_at
    target.updated_at = source.updated_at


def _refuse_state(campaign: Campaign, action: str) -> None:
    if campaign.status in (Campaign.Status.SENDING, Campaign.Status.PAUSED):
        raise ApplicationError(
            f"This campaign is {campaign.get_status_display().lower()}: it cannot be {action} "
            "here. Stop it from its sending controls."
        )
    raise ApplicationError(
        f"This campaign is {campaign.get_status_display().lower()}: it cannot be {action}."
    )


@transaction.atomic
def campaign_schedule(
    *, campaign: Campaign, send_at: datetime | None, acting_user: User | None
) -> Campaign:
    """Schedule a draft (or move a scheduled campaign) to `send_at`; None sends now.

    The pre-send checklist runs under the row lock, so nothing changes between the check
    and the new status.
    """
    locked = _locked(campaign)
    if locked.status not in _SCHEDULABLE:
        _refuse_state(locked, "scheduled")
    if locked.archived_at is not None:
        raise ApplicationError("This campaign is archived: restore it before sending.")
    now = timezone.now()
    if send_at is not None and timezone.is_naive(send_at):
        raise ApplicationError("The send time needs a time zone.")
    when = now if send_at is None else send_at
    if when < now - PAST_SLACK:
        raise ApplicationError("That time has already passed: choose a time in the future.")
    if when > now + MAX_AHEAD:
        raise ApplicationError("Schedule at most a year ahead.")
    checklist = presend_checks(campaign=locked)
    if not checklist.may_send:
        problems = [f"{check.label}: {check.message}" for check in checklist.blocking]
        raise ApplicationError(
            "Fix these before sending: " + " ".join(problems), extra={"problems": problems}
        )
    previous_status, previous_at = locked.status, locked.scheduled_at
    locked.status, locked.scheduled_at, locked.updated_at = Campaign.Status.SCHEDULED, when, now
    locked.save(update_fields=["status", "scheduled_at", "updated_at"])
    rescheduled = previous_status == Campaign.Status.SCHEDULED
    details = {"scheduled_at": when.isoformat(), "send_now": send_at is None}
    if rescheduled:
        details["previous_scheduled_at"] = previous_at.isoformat() if previous_at else None
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="campaign.rescheduled" if rescheduled else "campaign.scheduled",
        target=locked,
        details=details,
    )
    _copy_state(locked, campaign)
    return campaign


@transaction.atomic
def campaign_unschedule(*, campaign: Campaign, acting_user: User | None) -> Campaign:
    """Back to a draft, to edit or schedule again; only before sending has started."""
    locked = _locked(campaign)
    if locked.status != Campaign.Status.SCHEDULED:
        _refuse_state(locked, "unscheduled")
    previous_at = locked.scheduled_at
    locked.status, locked.scheduled_at = Campaign.Status.DRAFT, None
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "scheduled_at", "updated_at"])
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="campaign.unscheduled",
        target=locked,
        details={"previous_scheduled_at": previous_at.isoformat() if previous_at else None},
    )
    _copy_state(locked, campaign)
    return campaign


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, acting_user: User | None) -> Campaign:
    """Cancel a draft or scheduled campaign for good; a sending one is stopped elsewhere."""
    locked = _locked(campaign)
    if locked.status not in _SCHEDULABLE:
        _refuse_state(locked, "cancelled")
    previous_status, previous_at = locked.status, locked.scheduled_at
    locked.status, locked.scheduled_at = Campaign.Status.CANCELLED, None
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "scheduled_at", "updated_at"])
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="campaign.cancelled",
        target=locked,
        details={
            "previous_status": previous_status,
            "previous_scheduled_at": previous_at.isoformat() if previous_at else None,
        },
    )
    _copy_state(locked, campaign)
    return campaign


def campaign_list_due(*, now: datetime) -> QuerySet[Campaign]:
    """Scheduled campaigns of every workspace whose time has come, oldest first."""
    return (
        Campaign.objects.filter(
            status=Campaign.Status.SCHEDULED, scheduled_at__lte=now, archived_at__isnull=True
        )
        .select_related("workspace")
        .order_by("scheduled_at", "pk")
    )
