"""Operators' controls over what workspaces send: the kill switches, campaign approval, the
policy a new workspace starts with, and suspension of a workspace whose recipients
complain too much. The reads the pipeline asks are in sending/policy.py.

Automatic suspension looks at the last 7 days: the complaint rate (complaints / messages
handed over) at or above the workspace's complaint_limit_percent, or the platform's
SENDING_COMPLAINT_SUSPEND_PERCENT, stops its sending, with the reason shown and its owners
emailed. Below SUSPEND_MIN_SENT messages in those 7 days nothing is suspended: one complaint
about three messages says little, and the batch breaker already guards small sends.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.mail import templated_mail_send
from accounts.models import Membership, Role, User, Workspace
from campaigns.models import Campaign
from sending import policy
from sending.models import FeedbackEvent, PlatformSwitch, SendingPolicy
from sending.selectors import feedback_rates

SUSPEND_DAYS = 7
SUSPEND_MIN_SENT = 100


# --- the policy of a new workspace ------------------------------------------------------------


def sending_policy_create(*, workspace: Workspace) -> SendingPolicy:
    """A new workspace starts with low quotas (SENDING_NEW_WORKSPACE_*) and its campaigns
    wait for approval, until operators trust it."""
    sending_policy, _ = SendingPolicy.objects.get_or_create(
        workspace=workspace,
        defaults={
            "daily_quota": settings.SENDING_NEW_WORKSPACE_DAILY_QUOTA,
            "hourly_quota": settings.SENDING_NEW_WORKSPACE_HOURLY_QUOTA,
            "requires_approval": True,
        },
    )
    return sending_policy


# --- kill switches ----------------------------------------------------------------------------


def _platform_switch_locked() -> PlatformSwitch:
    switch = PlatformSwitch.objects.select_for_update().order_by("pk").first()
    return switch if switch is not None else PlatformSwitch.objects.create()


@transaction.atomic
def platform_sending_stop(*, reason: str, acting_user: User | None) -> PlatformSwitch:
    """Stop every workspace's new claims (workers notice within SENDING_POLICY_CACHE_SECONDS)."""
    switch = _platform_switch_locked()
    switch.is_sending_stopped, switch.reason = True, reason[:300]
    switch.changed_at = timezone.now()
    switch.save(update_fields=["is_sending_stopped", "reason", "changed_at"])
    audit_record(
        workspace=None,
        actor=acting_user,
        verb="platform.sending_stopped",
        target=switch,
        details={"reason": reason},
    )
    transaction.on_commit(policy.policy_cache_clear)
    return switch


@transaction.atomic
def platform_sending_allow(*, reason: str = "", acting_user: User | None) -> PlatformSwitch:
    switch = _platform_switch_locked()
    switch.is_sending_stopped, switch.reason = False, ""
    switch.changed_at = timezone.now()
    switch.save(update_fields=["is_sending_stopped", "reason", "changed_at"])
    audit_record(
        workspace=None,
        actor=acting_user,
        verb="platform.sending_allowed",
        target=switch,
        details={"reason": reason} if reason else None,
    )
    transaction.on_commit(policy.policy_cache_clear)
    return switch


def _policy_locked(workspace: Workspace) -> SendingPolicy:
    found = SendingPolicy.objects.select_for_update().filter(workspace=workspace).first()
    if found is not None:
        return found
    # A workspace without a policy has no quota and no approval step: stopping it keeps so.
    found, _ = SendingPolicy.objects.get_or_create(
        workspace=workspace,
        defaults={"daily_quota": 0, "hourly_quota": 0, "requires_approval": False},
    )
    return SendingPolicy.objects.select_for_update().get(pk=found.pk)


@transaction.atomic
def workspace_sending_stop(
    *, workspace: Workspace, reason: str, acting_user: User | None, notify_owners: bool = False
) -> SendingPolicy:
    """The workspace's kill switch: no delivery of it is claimed until it is allowed again
    (rows stay queued); campaigns keep their state."""
    sending_policy = _policy_locked(workspace)
    if sending_policy.is_sending_stopped:
        return sending_policy
    sending_policy.is_sending_stopped = True
    sending_policy.stopped_reason = reason[:300]
    sending_policy.stopped_at = timezone.now()
    sending_policy.save(update_fields=["is_sending_stopped", "stopped_reason", "stopped_at"])
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="workspace.sending_stopped",
        target=sending_policy,
        details={"reason": reason},
    )
    if notify_owners:
        _owners_notify(workspace=workspace, reason=reason)
    transaction.on_commit(policy.policy_cache_clear)
    return sending_policy


@transaction.atomic
def workspace_sending_allow(
    *, workspace: Workspace, reason: str = "", acting_user: User | None
) -> SendingPolicy:
    sending_policy = _policy_locked(workspace)
    if not sending_policy.is_sending_stopped:
        return sending_policy
    previous = sending_policy.stopped_reason
    sending_policy.is_sending_stopped = False
    sending_policy.stopped_reason = ""
    sending_policy.stopped_at = None
    sending_policy.save(update_fields=["is_sending_stopped", "stopped_reason", "stopped_at"])
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="workspace.sending_allowed",
        target=sending_policy,
        details={"reason": reason, "stopped_for": previous},
    )
    transaction.on_commit(policy.policy_cache_clear)
    return sending_policy


def _owners_notify(*, workspace: Workspace, reason: str) -> None:
    owners = list(
        Membership.objects.for_workspace(workspace)
        .filter(role=Role.OWNER, user__is_active=True)
        .values_list("user__email", flat=True)
    )
    if owners:
        templated_mail_send(
            template="sending/email/sending_suspended",
            to=owners,
            context={
                "workspace": workspace,
                "reason": reason,
                "overview_path": reverse(
                    "sending:overview", kwargs={"workspace_slug": workspace.slug}
                ),
            },
        )


# --- approval ---------------------------------------------------------------------------------


@transaction.atomic
def campaign_approve(*, campaign: Campaign, acting_user: User | None) -> Campaign:
    """An operator lets a campaign of a workspace under review start (at its scheduled
    time; the due-campaign scan picks it up)."""
    locked = Campaign.objects.select_for_update(of=("self",)).get(pk=campaign.pk)
    if locked.approved_at is not None:
        return locked
    if locked.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED):
        raise ApplicationError("Only a draft or scheduled campaign can be approved.")
    locked.approved_at, locked.approved_by = timezone.now(), acting_user
    locked.save(update_fields=["approved_at", "approved_by"])
    audit_record(
        workspace=locked.workspace, actor=acting_user, verb="campaign.approved", target=locked
    )
    return locked


# --- automatic suspension ---------------------------------------------------------------------


def complaint_limit_percent(*, sending_policy: SendingPolicy | None) -> Decimal:
    if sending_policy is not None and sending_policy.complaint_limit_percent is not None:
        return sending_policy.complaint_limit_percent
    return Decimal(str(settings.SENDING_COMPLAINT_SUSPEND_PERCENT))


def workspace_complaints_check(*, workspace: Workspace, now: dt.datetime | None = None) -> bool:
    """Suspend the workspace's sending if its 7-day complaint rate reached its limit (with
    at least SUSPEND_MIN_SENT messages in the window); True when it did so now."""
    sending_policy = SendingPolicy.objects.filter(workspace=workspace).first()
    if sending_policy is not None and sending_policy.is_sending_stopped:
        return False
    rates = feedback_rates(
        workspace=workspace, since=(now or timezone.now()) - dt.timedelta(days=SUSPEND_DAYS)
    )
    limit = complaint_limit_percent(sending_policy=sending_policy)
    percent = rates.complaint_rate * 100
    if rates.sent < SUSPEND_MIN_SENT or not rates.complaints or percent < float(limit):
        return False
    reason = (
        f"Spam complaints reached {percent:.2f}% of the {rates.sent} messages sent in the last "
        f"{SUSPEND_DAYS} days (limit {limit.normalize()}%)."
    )
    workspace_sending_stop(workspace=workspace, reason=reason, acting_user=None, notify_owners=True)
    return True


def workspaces_complaints_check(*, now: dt.datetime | None = None) -> list[int]:
    """Periodic: check every workspace with a complaint in the window; the ids suspended."""
    now = now or timezone.now()
    since = now - dt.timedelta(days=SUSPEND_DAYS)
    ids = (
        FeedbackEvent.objects.filter(kind=FeedbackEvent.Kind.COMPLAINT, created_at__gte=since)
        .order_by()
        .values_list("workspace_id", flat=True)
        .distinct()
    )
    suspended = []
    for workspace in Workspace.objects.filter(pk__in=list(ids)):
        if workspace_complaints_check(workspace=workspace, now=now):
            suspended.append(workspace.pk)
    return suspended
