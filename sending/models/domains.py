from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.encryption import EncryptedTextField
from accounts.models import WorkspaceOwned
from sending.domain_names import domain_display


class RecordState(models.TextChoices):
    PASS = "pass", "Pass"
    MISSING = "missing", "Missing"
    MISMATCH = "mismatch", "Mismatch"
    UNKNOWN = "unknown", "Unknown"  # DNS did not answer (SERVFAIL, timeout): not a verdict
    PENDING = "pending", "Not checked yet"


class SendingDomain(WorkspaceOwned):
    """A domain a workspace sends from; its DNS records are checked and re-checked."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        VERIFIED = "verified", "Verified"
        FAILING = "failing", "Failing"  # was verified, a required record broke since

    # The records that must pass before the domain may be used in From addresses.
    REQUIRED_RECORDS = ("dkim", "spf", "dmarc", "return_path")

    domain = models.CharField(max_length=253, help_text="ASCII (IDNA) form, lower-case.")
    return_path_subdomain = models.CharField(max_length=63, default="bounces")
    tracking_subdomain = models.CharField(max_length=63, default="links")
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    record_states = models.JSONField(default=dict, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    first_verified_at = models.DateTimeField(null=True, blank=True)
    broken_at = models.DateTimeField(null=True, blank=True)
    warmup_started_on = models.DateField(
        null=True, blank=True, help_text="Day 1 of the domain's warm-up (blank: the first send)."
    )
    is_warmed_up = models.BooleanField(
        default=False, help_text="Past the warm-up, or an established domain: no domain cap."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]
        constraints = [
            # A domain belongs to one workspace of the whole platform.
            models.UniqueConstraint(fields=["domain"], name="sending_domain_unique"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "verified", "failing"]),
                name="sending_domain_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return domain_display(self.domain)

    @property
    def return_path_host(self) -> str:
        return f"{self.return_path_subdomain}.{self.domain}"

    @property
    def tracking_host(self) -> str:
        return f"{self.tracking_subdomain}.{self.domain}"

    @property
    def is_verified(self) -> bool:
        return self.status == self.Status.VERIFIED

    def record_state(self, key: str) -> str:
        return (self.record_states.get(key) or {}).get("state", RecordState.PENDING)


class DkimKey(WorkspaceOwned):
    """One DKIM key of a domain; rotation adds a pending key and retires the old one later."""

    class Algorithm(models.TextChoices):
        RSA = "rsa", "RSA-2048"
        ED25519 = "ed25519", "Ed25519"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for DNS"  # published? not yet verified, not signing
        ACTIVE = "active", "Signing"
        RETIRING = "retiring", "Retiring"  # no longer signs; keep published until retire_after
        RETIRED = "retired", "Retired"

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="dkim_keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=10, choices=Algorithm.choices, default="rsa")
    private_key = EncryptedTextField(help_text="Sealed with FIELD_ENCRYPTION_KEY.")
    public_key = models.TextField(help_text="Base64, the p= value of the DNS record.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    retire_after = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["domain", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="sending_dkim_selector"),
            models.UniqueConstraint(
                fields=["domain", "algorithm"],
                condition=models.Q(status="active"),
                name="sending_dkim_one_active_per_algorithm",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "active", "retiring", "retired"]),
                name="sending_dkim_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain} ({self.algorithm})"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def record_value(self) -> str:
        from sending.dkim import dkim_record_value

        return dkim_record_value(algorithm=self.algorithm, public_b64=self.public_key)

    @property
    def record_key(self) -> str:
        """Key of this key's result in SendingDomain.record_states."""
        return f"dkim:{self.selector}"


class DomainCheck(WorkspaceOwned):
    """One run of the DNS checks of a domain, kept as history."""

    class Trigger(models.TextChoices):
        MANUAL = "manual", "On demand"
        PERIODIC = "periodic", "Periodic"

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="checks")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    checked_at = models.DateTimeField(default=timezone.now, db_index=True)
    status_before = models.CharField(max_length=10)
    status_after = models.CharField(max_length=10)
    results = models.JSONField(default=dict)

    class Meta:
        ordering = ["-checked_at", "-id"]

    def __str__(self) -> str:
        return f"{self.domain} checked {self.checked_at:%Y-%m-%d %H:%M}: {self.status_after}"

    @property
    def is_breakage(self) -> bool:
        return self.status_before == "verified" and self.status_after == "failing"
