"""Campaigns and the layouts they are written in."""

from django.db import models
from django.utils import timezone

from accounts.models import User, WorkspaceOwned
from contacts.models import ContactList, Segment


class Template(WorkspaceOwned):
    """A reusable layout: HTML whose `{{ content }}` slot receives a campaign's body."""

    name = models.CharField(max_length=120)
    html = models.TextField(help_text="HTML with a {{ content }} slot for the campaign body.")
    is_starter = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Campaign(WorkspaceOwned):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=300, blank=True)
    preheader = models.CharField(max_length=300, blank=True)
    from_name = models.CharField(max_length=120, blank=True)
    from_email = models.CharField(max_length=320, blank=True)
    reply_to = models.CharField(max_length=320, blank=True)
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaigns"
    )
    html = models.TextField(blank=True)
    text = models.TextField(blank=True, help_text="Blank: derived from the HTML.")
    include_lists = models.ManyToManyField(ContactList, blank=True, related_name="+")
    include_segments = models.ManyToManyField(Segment, blank=True, related_name="+")
    exclude_lists = models.ManyToManyField(ContactList, blank=True, related_name="+")
    exclude_segments = models.ManyToManyField(Segment, blank=True, related_name="+")
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["draft", "scheduled", "sending", "paused", "sent", "cancelled"]
                ),
                name="campaigns_campaign_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        return self.status == self.Status.DRAFT
