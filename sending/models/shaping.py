"""Traffic shaping: warm-up schedules, destination providers and their limits, workspace
sending policies (quotas, approval, kill switch) and the platform's kill switch.

Counters that change on every message (rates, concurrency, today's warm-up volume) live
in Redis (sending/throttle.py); these tables hold what operators set and what is slow to
learn (a recipient domain's provider).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import WorkspaceOwned

# Providers that recipient domains are grouped into (sending/providers.py).
PROVIDERS = [
    ("google", "Google (Gmail, Workspace)"),
    ("yahoo", "Yahoo / AOL"),
    ("microsoft", "Microsoft (Outlook.com, Office 365)"),
    ("apple", "Apple iCloud"),
    ("gmx", "GMX / Web.de"),
    ("yandex", "Yandex"),
    ("mailru", "Mail.ru"),
    ("other", "Other"),
]


def default_ramp() -> list[int]:
    """About 30 days from 50 a day to 1,000,000, per IP (or domain) and provider."""
    return [
        50, 100, 200, 500, 1000, 2000, 3000, 5000, 7500, 10000,
        15000, 20000, 25000, 30000, 40000, 50000, 60000, 75000, 90000, 110000,
        130000, 160000, 200000, 250000, 300000, 400000, 500000, 650000, 800000, 1000000,
    ]  # fmt: skip


class WarmupSchedule(models.Model):
    """A day-by-day cap: daily_caps[0] on the first day, the last value for ever after."""

    name = models.CharField(max_length=100, unique=True)
    daily_caps = models.JSONField(default=default_ramp)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="sending_warmup_one_default",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProviderLimit(models.Model):
    """What one mailbox provider takes from one sending IP (operators tune these)."""

    provider = models.CharField(max_length=20, choices=PROVIDERS, unique=True)
    messages_per_minute = models.PositiveIntegerField(default=600)
    max_connections = models.PositiveSmallIntegerField(default=10)
    messages_per_connection = models.PositiveSmallIntegerField(default=100)
    is_held = models.BooleanField(
        default=False, help_text="Held by an operator: nothing is sent to this provider."
    )
    held_reason = models.CharField(max_length=300, blank=True)
    held_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["provider"]

    def __str__(self) -> str:
        return self.get_provider_display()


class RecipientDomain(models.Model):
    """A recipient domain's provider, learnt from its MX hosts and kept (re-checked when
    older than PROVIDER_MX_MAX_AGE_SECONDS)."""

    domain = models.CharField(max_length=253, unique=True)
    provider = models.CharField(max_length=20, choices=PROVIDERS, default="other")
    mx_hosts = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.domain} → {self.provider}"


def _daily_quota() -> int:
    return settings.SENDING_NEW_WORKSPACE_DAILY_QUOTA


def _hourly_quota() -> int:
    return settings.SENDING_NEW_WORKSPACE_HOURLY_QUOTA


class SendingPolicy(WorkspaceOwned):
    """What a workspace may send, set by operators: quotas, whether its campaigns wait
    for approval, and its kill switch."""

    daily_quota = models.PositiveIntegerField(default=_daily_quota)
    hourly_quota = models.PositiveIntegerField(default=_hourly_quota)
    requires_approval = models.BooleanField(
        default=True, help_text="Campaigns wait for an operator's approval before they start."
    )
    is_sending_stopped = models.BooleanField(default=False)
    stopped_reason = models.CharField(max_length=300, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    complaint_limit_percent = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        null=True,
        blank=True,
        help_text="7-day complaint rate that suspends sending (blank: the platform's).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "sending policies"
        constraints = [
            models.UniqueConstraint(fields=["workspace"], name="sending_one_policy_per_workspace"),
        ]

    def __str__(self) -> str:
        return f"Sending policy of {self.workspace}"


class PlatformSwitch(models.Model):
    """The platform's kill switch: one row; while on, no campaign claims anything."""

    is_sending_stopped = models.BooleanField(default=False)
    reason = models.CharField(max_length=300, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "platform kill switch"
        verbose_name_plural = "platform kill switch"

    def __str__(self) -> str:
        return "Sending stopped" if self.is_sending_stopped else "Sending allowed"
