from django.db import models
from django.utils import timezone

from accounts.models import Workspace, WorkspaceOwned


class IpPool(models.Model):
    """Sending IPs used together: shared by many workspaces, or dedicated to one."""

    class Kind(models.TextChoices):
        SHARED = "shared", "Shared"
        DEDICATED = "dedicated", "Dedicated"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.SHARED)
    dedicated_workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_default = models.BooleanField(
        default=False, help_text="Used by workspaces that are not assigned a pool."
    )
    warmup_schedule = models.ForeignKey(
        "sending.WarmupSchedule",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pools",
        help_text="The ramp of this pool's warming IPs (blank: the default schedule).",
    )
    transport = models.CharField(
        max_length=10,
        blank=True,
        choices=[("smtp", "SMTP relay"), ("mx", "Direct to MX"), ("anymail", "ESP API")],
        help_text="How this pool's mail leaves; blank: the platform default (SENDING_TRANSPORT).",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "IP pool"
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="shared", dedicated_workspace__isnull=True)
                    | models.Q(kind="dedicated", dedicated_workspace__isnull=False)
                ),
                name="sending_pool_dedicated_has_workspace",
            ),
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="sending_pool_one_default",
            ),
            models.CheckConstraint(
                condition=models.Q(is_default=False) | models.Q(kind="shared"),
                name="sending_pool_default_is_shared",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class WorkspacePool(WorkspaceOwned):
    """The pool a workspace sends through (operators assign it in the admin)."""

    pool = models.ForeignKey(IpPool, on_delete=models.PROTECT, related_name="assignments")
    assigned_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "workspace pool assignment"
        constraints = [
            models.UniqueConstraint(fields=["workspace"], name="sending_one_pool_per_workspace"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace} → {self.pool}"


class SendingIp(models.Model):
    """An address used as the SMTP source address, on the host where it is bound."""

    address = models.GenericIPAddressField(unique=True)
    pool = models.ForeignKey(IpPool, on_delete=models.PROTECT, related_name="ips")
    helo_hostname = models.CharField(
        max_length=253, help_text="Name given in HELO/EHLO; its PTR should match."
    )
    bound_host = models.CharField(
        max_length=253, blank=True, help_text="Worker host on which the address is bound."
    )
    is_active = models.BooleanField(default=True)

    class State(models.TextChoices):
        WARMING = "warming", "Warming up"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"

    state = models.CharField(max_length=10, choices=State.choices, default=State.WARMING)
    warmup_started_on = models.DateField(
        null=True, blank=True, help_text="Day 1 of the warm-up (blank: the first send)."
    )
    ptr_state = models.CharField(max_length=10, default="pending")
    ptr_names = models.JSONField(default=list, blank=True)
    ptr_detail = models.CharField(max_length=500, blank=True)
    ptr_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["pool", "address"]
        verbose_name = "sending IP"

    def __str__(self) -> str:
        return self.address
