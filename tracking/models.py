"""What the tracking endpoints record and the counters reports read.

`Event` is one open or click as it arrived: a range-partitioned table (one partition a
month, created ahead by `tracking.partitions`, old ones dropped by retention), written
only by the ingestion path (tracking/ingest.py) in bulk. Its SQL is the migration's; the
model is unmanaged and its primary key is (id, occurred_at) in the database.

The counters are kept in the same transaction as the events they count, so a report never
reads a count its events do not back: `DeliveryActivity` (per delivery: opens and clicks,
first times, human and all — unique counts are rows), `HourlyActivity` (per campaign and
hour: the timeline), `LinkActivity` (per campaign and link) and `LinkClick` (a delivery's
first click on a link, for unique clicks per link).
"""

from django.db import models

from accounts.models import WorkspaceOwned
from campaigns.models import Campaign, Variant
from contacts.models import Contact
from sending.models import Delivery


class Event(WorkspaceOwned):
    class Kind(models.TextChoices):
        OPEN = "open", "Open"
        CLICK = "click", "Click"

    # The database's key is (id, occurred_at), as partitioning requires; id alone is
    # unique (an identity column), which is all Django needs of a primary key.
    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField()
    kind = models.CharField(max_length=5, choices=Kind.choices)
    campaign = models.ForeignKey(
        Campaign, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    delivery = models.ForeignKey(
        Delivery, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    url = models.TextField(blank=True, help_text="A click's target.")
    machine_rule = models.CharField(
        max_length=40, blank=True, help_text="The rule that judged it a machine's; blank: human."
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    method = models.CharField(max_length=7, default="GET")
    # Given by the endpoint before the event is written: writing it twice stores it once.
    event_key = models.UUIDField()

    class Meta:
        managed = False
        db_table = "tracking_event"

    def __str__(self) -> str:
        return f"{self.kind} of delivery {self.delivery_id} at {self.occurred_at}"

    @property
    def is_machine(self) -> bool:
        return bool(self.machine_rule)


class PendingHit(models.Model):
    """An open or click the endpoints answered, not yet an event: the buffer between the
    web nodes' spools (tracking/spool.py), whose flushers insert hits here in batches,
    and the drain (tracking/ingest.py), which turns them into events and counters in
    large batches, seconds later, and deletes them in the same transaction. Not a
    workspace's data until then: the delivery is looked up by the drain (a hit of a
    deleted delivery is dropped there)."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=5, choices=Event.Kind.choices)
    delivery_id = models.BigIntegerField()
    url = models.TextField(blank=True)
    occurred_at = models.DateTimeField()
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    method = models.CharField(max_length=7, default="GET")
    event_key = models.UUIDField()

    def __str__(self) -> str:
        return f"pending {self.kind} of delivery {self.delivery_id} at {self.occurred_at}"


class DeliveryActivity(WorkspaceOwned):
    """One delivery's opens and clicks: a row exists once it was opened or clicked."""

    delivery = models.OneToOneField(
        Delivery, on_delete=models.CASCADE, primary_key=True, related_name="activity"
    )
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(
        Variant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=20, blank=True)
    opens = models.PositiveIntegerField(default=0)
    human_opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    human_clicks = models.PositiveIntegerField(default=0)
    first_open_at = models.DateTimeField(null=True, blank=True)
    first_human_open_at = models.DateTimeField(null=True, blank=True)
    first_click_at = models.DateTimeField(null=True, blank=True)
    first_human_click_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "delivery activity"
        indexes = [models.Index(fields=["campaign"], name="tracking_activity_campaign_idx")]


class HourlyActivity(WorkspaceOwned):
    """A campaign's events per hour (the report's timeline), human and all, and the
    deliveries first opened or clicked in that hour (unique)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    opens = models.PositiveIntegerField(default=0)
    human_opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    human_clicks = models.PositiveIntegerField(default=0)
    unique_opens = models.PositiveIntegerField(default=0)
    unique_human_opens = models.PositiveIntegerField(default=0)
    unique_clicks = models.PositiveIntegerField(default=0)
    unique_human_clicks = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "hourly activity"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "hour"], name="tracking_hourly_unique"),
        ]


class LinkActivity(WorkspaceOwned):
    """Clicks on one link of a campaign (its target URL), human and all."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    url = models.TextField()
    url_hash = models.CharField(max_length=64, help_text="SHA-256 of the URL: the unique key.")
    clicks = models.PositiveIntegerField(default=0)
    human_clicks = models.PositiveIntegerField(default=0)
    unique_clicks = models.PositiveIntegerField(default=0)
    unique_human_clicks = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "link activity"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "url_hash"], name="tracking_link_unique"),
        ]


class LinkClick(WorkspaceOwned):
    """A delivery's first click on one link (unique clicks per link are these rows)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    url_hash = models.CharField(max_length=64)
    first_click_at = models.DateTimeField()
    first_human_click_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "url_hash"], name="tracking_linkclick_unique"
            ),
        ]


class CampaignRollup(WorkspaceOwned):
    """A campaign's report figures, computed by the roll-up task (tracking/rollups.py) from
    its deliveries, feedback, consent records and activity counters, so that a report of
    a million deliveries reads one row. `counts`: totals; `by_provider` and `by_variant`:
    the same figures per destination provider and per A/B variant."""

    campaign = models.OneToOneField(
        Campaign, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    computed_at = models.DateTimeField()
    counts = models.JSONField(default=dict)
    by_provider = models.JSONField(default=dict)
    by_variant = models.JSONField(default=dict)


class WorkspaceDay(WorkspaceOwned):
    """One day of a workspace's sending and engagement (UTC), for the dashboard's 30 days:
    recomputed by the roll-up task for the days that can still change."""

    day = models.DateField()
    counts = models.JSONField(default=dict)
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "day"], name="tracking_workspaceday_unique"
            ),
        ]
