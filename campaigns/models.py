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


class TemplateVersion(WorkspaceOwned):
    """A saved state of a template's HTML; every save of a template adds one."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    html = models.TextField()
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "number"], name="campaigns_templateversion_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"


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
    track_opens = models.BooleanField(default=True, help_text="Add the open pixel.")
    track_clicks = models.BooleanField(
        default=True, help_text="Send links through the click redirect."
    )
    web_version = models.BooleanField(
        default=True, help_text="Offer the view-in-browser page ({{ web_version_url }})."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    scheduled_at = models.DateTimeField(
        null=True, blank=True, help_text="When a scheduled campaign starts sending (UTC)."
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    # Set by an operator when the workspace's campaigns need approval before they start.
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
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


class MediaImage(WorkspaceOwned):
    """An image of the workspace's media library, re-encoded on upload (no metadata left).

    `file_name` is the storage name of the re-encoded original; `variants` maps a width
    (as a string) to the storage name of a resized copy.
    """

    name = models.CharField(max_length=200, help_text="The uploaded file's name.")
    file_name = models.CharField(max_length=300)
    content_type = models.CharField(max_length=40)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    variants = models.JSONField(default=dict, blank=True)
    alt_text = models.CharField(max_length=300, blank=True)
    uploaded_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class AbTest(WorkspaceOwned):
    """The design of a campaign's A/B test: variants go to a test share, the winner to the rest.

    Campaigns stores and shows the design; sending sends the test share and holds the rest;
    tracking picks the winner after the wait and releases the rest.
    """

    class Metric(models.TextChoices):
        OPENS = "opens", "Unique opens"
        CLICKS = "clicks", "Unique clicks"

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="ab_test")
    test_share_percent = models.PositiveSmallIntegerField(
        default=20, help_text="Share of the audience that receives the variants (1-50%)."
    )
    metric = models.CharField(max_length=10, choices=Metric.choices, default=Metric.OPENS)
    wait_minutes = models.PositiveIntegerField(default=240)
    winner = models.ForeignKey(
        "Variant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(test_share_percent__gte=1, test_share_percent__lte=50),
                name="campaigns_abtest_share_range",
            ),
            models.CheckConstraint(
                condition=models.Q(metric__in=["opens", "clicks"]),
                name="campaigns_abtest_metric_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"A/B test of {self.campaign}"


class Variant(WorkspaceOwned):
    """One arm of an A/B test: its subject, and optionally its own HTML body."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="variants")
    label = models.CharField(max_length=2)
    subject = models.CharField(max_length=300)
    html = models.TextField(blank=True, help_text="Blank: the campaign's body.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["campaign", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "label"], name="campaigns_variant_label_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} · {self.label}"
