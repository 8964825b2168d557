"""What was sent to whom: one Delivery per recipient of a campaign, its attempts, and the
campaign's send (snapshot counts, pause flag, progress)."""

from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import WorkspaceOwned
from campaigns.models import Campaign, Variant
from contacts.models import Contact


class CampaignSend(WorkspaceOwned):
    """A campaign's run through the pipeline: the snapshot's counts and the controls.

    The exclusion counts are kept so that the report can say why the audience of 10,000
    became 9,412 deliveries.
    """

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="send")
    audience_total = models.PositiveIntegerField(default=0)
    excluded_suppressed = models.PositiveIntegerField(default=0)
    excluded_inactive = models.PositiveIntegerField(default=0)
    excluded_duplicate = models.PositiveIntegerField(default=0)
    excluded_invalid = models.PositiveIntegerField(default=0)
    deliveries_total = models.PositiveIntegerField(default=0)
    layout_html = models.TextField(
        blank=True, help_text="The layout as it was when the send started (blank: none)."
    )
    is_paused = models.BooleanField(default=False)
    pause_reason = models.CharField(max_length=300, blank=True)
    paused_by_breaker = models.BooleanField(default=False)
    # The batch circuit breaker: claims stop at batch_limit deliveries until the batch's
    # outcomes are checked and the next, larger batch is opened.
    batch_number = models.PositiveSmallIntegerField(default=1)
    batch_limit = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Send of {self.campaign}"


class Delivery(WorkspaceOwned):
    """One message to one address: the unit of exactly-once.

    queued → claimed → in_flight → sent | deferred | bounced | failed | unknown, or
    skipped (with a reason); holding waits for an A/B winner. Claims carry a lease token and
    every later change is a compare-and-set on it (sending/services/deliveries.py).
    """

    class State(models.TextChoices):
        HOLDING = "holding", "Holding for the A/B winner"
        QUEUED = "queued", "Queued"
        CLAIMED = "claimed", "Claimed"
        IN_FLIGHT = "in_flight", "In flight"
        SENT = "sent", "Sent"
        DEFERRED = "deferred", "Deferred"
        BOUNCED = "bounced", "Bounced"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown (connection lost after DATA)"
        SKIPPED = "skipped", "Skipped"

    class BounceClass(models.TextChoices):
        HARD = "hard", "Hard"
        SOFT = "soft", "Soft"
        BLOCK = "block", "Block"
        UNKNOWN = "unknown", "Unknown"

    # States in which the delivery may still produce a message.
    OPEN_STATES = ("holding", "queued", "claimed", "in_flight", "deferred")

    # A campaign that has sent keeps its history: it cannot be deleted on its own (deleting
    # its workspace still removes everything).
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="deliveries")
    variant = models.ForeignKey(
        Variant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    address = models.CharField(max_length=320, help_text="The address at send time.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    skip_reason = models.CharField(max_length=200, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    bounce_class = models.CharField(max_length=7, choices=BounceClass.choices, blank=True)
    last_response = models.CharField(max_length=500, blank=True)
    message_id = models.CharField(max_length=250, blank=True)
    provider = models.CharField(
        max_length=20, blank=True, db_default="", help_text="Destination provider."
    )
    source_ip = models.GenericIPAddressField(
        null=True, blank=True, help_text="The sending IP it left from (mx transport)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                "campaign", Lower("address"), name="sending_delivery_address_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(
                    state__in=[
                        "holding",
                        "queued",
                        "claimed",
                        "in_flight",
                        "sent",
                        "deferred",
                        "bounced",
                        "failed",
                        "unknown",
                        "skipped",
                    ]
                ),
                name="sending_delivery_state_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["claimed", "in_flight"], lease_token__isnull=False)
                | ~models.Q(state__in=["claimed", "in_flight"]),
                name="sending_delivery_leased_has_token",
            ),
        ]
        indexes = [
            models.Index(fields=["campaign", "state"], name="sending_delivery_state_idx"),
            # The claim query: queued (or deferred and due) rows of a campaign, by id.
            models.Index(
                fields=["campaign", "id"],
                name="sending_delivery_queued_idx",
                condition=models.Q(state="queued"),
            ),
            # The shaped claim: a campaign's queued rows towards one provider, by id.
            models.Index(
                fields=["campaign", "provider", "id"],
                name="sending_delivery_provider_idx",
                condition=models.Q(state="queued"),
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="sending_delivery_deferred_idx",
                condition=models.Q(state="deferred"),
            ),
            # A complaint that lost its VERP address is matched by the original Message-ID.
            models.Index(
                fields=["message_id"],
                name="sending_delivery_msgid_idx",
                condition=~models.Q(message_id=""),
            ),
            # The operators' mail queue: unfinished deliveries by provider and state.
            models.Index(
                fields=["provider", "state"],
                name="sending_delivery_open_idx",
                condition=models.Q(
                    state__in=["holding", "queued", "claimed", "in_flight", "deferred"]
                ),
            ),
            # A workspace's quota: what it sent in the last hour and day.
            models.Index(
                fields=["workspace", "sent_at"],
                name="sending_delivery_sent_idx",
                condition=models.Q(sent_at__isnull=False),
            ),
            # Warm-up volume of a sending IP per provider and day.
            models.Index(
                fields=["source_ip", "provider", "updated_at"],
                name="sending_delivery_source_ip_idx",
                condition=models.Q(source_ip__isnull=False),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="sending_delivery_lease_idx",
                condition=models.Q(state__in=["claimed", "in_flight"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.state})"


class DeliveryAttempt(WorkspaceOwned):
    """One hand-over of a delivery to a transport, committed with the state it led to."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    transport = models.CharField(max_length=20)
    remote_host = models.CharField(max_length=253, blank=True)
    smtp_code = models.PositiveSmallIntegerField(null=True, blank=True)
    enhanced_code = models.CharField(max_length=12, blank=True)
    response = models.CharField(max_length=1000, blank=True)
    outcome = models.CharField(max_length=10, choices=Delivery.State.choices)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["delivery", "started_at"]
        indexes = [models.Index(fields=["delivery"], name="sending_attempt_delivery_idx")]

    def __str__(self) -> str:
        return f"{self.delivery_id} {self.outcome} {self.smtp_code or ''}".strip()
