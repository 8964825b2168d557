from django.db import models
from django.utils import timezone

from accounts.models import User, WorkspaceOwned


class GdprRequest(WorkspaceOwned):
    """A data subject's request: an export of everything held about an address, or its
    erasure. The address is blanked once an erasure has run; a hash prefix names it after."""

    class Kind(models.TextChoices):
        EXPORT = "export", "Export"
        ERASURE = "erasure", "Erasure"

    class Status(models.TextChoices):
        AWAITING_CONFIRMATION = "awaiting", "Awaiting the person's confirmation"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Requester(models.TextChoices):
        MARKETER = "marketer", "A team member"
        PERSON = "person", "The person"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    email = models.CharField(max_length=320, blank=True)
    address_hint = models.CharField(
        max_length=16, blank=True, help_text="A prefix of the address's keyed hash."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requester = models.CharField(max_length=10, choices=Requester.choices)
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_name = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=["export", "erasure"]),
                name="compliance_gdprrequest_kind_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["awaiting", "queued", "running", "done", "failed"]),
                name="compliance_gdprrequest_status_valid",
            ),
        ]

    def __str__(self) -> str:
        # Never the address: this string lands in audit entries.
        return f"{self.get_kind_display()} request #{self.pk}"
