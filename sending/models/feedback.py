"""What comes back: raw inbound mail as it arrived (bounces, complaints, `mailto:`
unsubscribes), and the feedback events read from it or from an ESP's webhooks."""

from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import Workspace, WorkspaceOwned
from sending.models.deliveries import Delivery


class InboundMessage(models.Model):
    """One message the inbound listener accepted, stored before it answered 250.

    Global: its workspace is known only once a delivery is matched. The raw bytes stay
    for the operator's review and are dropped after INBOUND_RETENTION_DAYS.
    """

    class Status(models.TextChoices):
        RECEIVED = "received", "Received, waiting"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (auto-reply, delivered report)"
        UNPARSED = "unparsed", "Not understood: review"
        FAILED = "failed", "Processing failed"

    class Kind(models.TextChoices):
        BOUNCE = "bounce", "Bounce"
        COMPLAINT = "complaint", "Complaint"
        AUTO_REPLY = "auto_reply", "Auto-reply"
        DELIVERED = "delivered", "Delivered report"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe by email"
        UNKNOWN = "unknown", "Unknown"

    received_at = models.DateTimeField(default=timezone.now, editable=False)
    peer = models.CharField(max_length=100, blank=True, help_text="Client IP and port.")
    helo = models.CharField(max_length=255, blank=True)
    mail_from = models.CharField(max_length=320, blank=True)
    recipients = models.JSONField(default=list)
    size = models.PositiveIntegerField(default=0)
    raw = models.BinaryField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    kind = models.CharField(max_length=12, choices=Kind.choices, blank=True)
    summary = models.JSONField(default=dict, blank=True, help_text="What the parser read.")
    error = models.TextField(blank=True)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweep may hand a received row over again."
    )
    processed_at = models.DateTimeField(null=True, blank=True)
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["received", "processed", "ignored", "unparsed", "failed"]
                ),
                name="sending_inbound_status_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="sending_inbound_status_idx"),
            models.Index(fields=["received_at"], name="sending_inbound_received_idx"),
        ]

    def __str__(self) -> str:
        return f"Inbound #{self.pk} from {self.mail_from or '<>'} ({self.status})"


class FeedbackEvent(WorkspaceOwned):
    """One fact about one delivery after it left: a bounce, a delay, a complaint, an
    unsubscribe by email, or an ESP's delivered/rejected event. Recorded once: an ESP's
    redelivered webhook carries the same (source, event_id)."""

    class Kind(models.TextChoices):
        BOUNCE = "bounce", "Bounce"
        DEFERRAL = "deferral", "Delayed"
        COMPLAINT = "complaint", "Complaint"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribe"
        DELIVERED = "delivered", "Delivered"
        REJECTED = "rejected", "Rejected by the ESP"

    class BounceClass(models.TextChoices):
        HARD = "hard", "Hard"
        SOFT = "soft", "Soft"
        BLOCK = "block", "Block"
        UNKNOWN = "unknown", "Unknown"

    delivery = models.ForeignKey(
        Delivery, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    bounce_class = models.CharField(max_length=7, choices=BounceClass.choices, blank=True)
    rule = models.CharField(max_length=100, blank=True, help_text="The rule that classified it.")
    status = models.CharField(max_length=12, blank=True, help_text="Enhanced status code.")
    diagnostic = models.CharField(max_length=1000, blank=True)
    remote_mta = models.CharField(max_length=253, blank=True)
    feedback_type = models.CharField(max_length=30, blank=True, help_text="ARF Feedback-Type.")
    address = models.CharField(max_length=320, blank=True)
    sending_domain = models.CharField(
        max_length=253, blank=True, help_text="The From domain: where blocks are counted."
    )
    source = models.CharField(max_length=40, help_text='"inbound" or "anymail:<esp>".')
    event_id = models.CharField(max_length=200, blank=True)
    inbound_message = models.ForeignKey(
        InboundMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "event_id"],
                condition=~models.Q(event_id=""),
                name="sending_feedback_event_once",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    kind__in=[
                        "bounce",
                        "deferral",
                        "complaint",
                        "unsubscribe",
                        "delivered",
                        "rejected",
                    ]
                ),
                name="sending_feedback_kind_valid",
            ),
        ]
        indexes = [
            models.Index(
                fields=["workspace", "kind", "occurred_at"], name="sending_feedback_kind_idx"
            ),
            models.Index(Lower("address"), "occurred_at", name="sending_feedback_address_idx"),
            models.Index(
                fields=["sending_domain", "occurred_at"],
                name="sending_feedback_domain_idx",
                condition=models.Q(bounce_class="block"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.bounce_class} {self.address}".strip()
