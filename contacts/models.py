import secrets

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import Value
from django.db.models.functions import Concat, Lower
from django.utils import timezone

from accounts.models import User, Workspace, WorkspaceOwned


class Contact(WorkspaceOwned):
    """A person in a workspace's audience, one per address (matched case-insensitively)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    # Domain lower-cased and IDNA-encoded; local part as typed (see contacts/addresses.py).
    email = models.CharField(max_length=320)
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Facts copied here by the sending and tracking apps, so segments read one table.
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    last_clicked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "workspace", Lower("email"), name="contacts_contact_email_ci_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "bounced", "complained", "unsubscribed"]),
                name="contacts_contact_status_valid",
            ),
        ]
        indexes = [
            # Keyset pagination of the contacts table, newest first.
            models.Index(
                fields=["workspace", "-created_at", "-id"], name="contacts_ws_created_idx"
            ),
            models.Index(fields=["workspace", "status"], name="contacts_ws_status_idx"),
            # Substring search of the contacts table: selectors.contact_search_expression.
            GinIndex(
                OpClass(
                    Lower(Concat("email", Value(" "), "first_name", Value(" "), "last_name")),
                    name="gin_trgm_ops",
                ),
                name="contacts_search_trgm_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def full_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)


class Field(WorkspaceOwned):
    """A custom field: the typed meaning of one key of Contact.attributes."""

    class Type(models.TextChoices):
        TEXT = "text", "Text"
        NUMBER = "number", "Number"
        DATE = "date", "Date"
        BOOLEAN = "boolean", "Yes / no"
        CHOICE = "choice", "Choice"

    key = models.SlugField(max_length=64, help_text="Used in merge tags and imports, e.g. plan.")
    label = models.CharField(max_length=120)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.TEXT)
    choices = models.JSONField(default=list, blank=True, help_text="Allowed values of a choice.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["label"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="contacts_field_key_unique"),
        ]

    def __str__(self) -> str:
        return self.label


class ContactList(WorkspaceOwned):
    class OptIn(models.TextChoices):
        SINGLE = "single", "Single opt-in"
        DOUBLE = "double", "Double opt-in (confirm by email)"

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    opt_in = models.CharField(max_length=10, choices=OptIn.choices, default=OptIn.DOUBLE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="contacts_list_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class Subscription(WorkspaceOwned):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmation"
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="subscriptions")
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.CASCADE, related_name="subscriptions"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    subscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "contact_list"], name="contacts_subscription_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "subscribed", "unsubscribed"]),
                name="contacts_subscription_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["contact_list", "status"], name="contacts_sub_list_idx")]

    def __str__(self) -> str:
        return f"{self.contact} in {self.contact_list}: {self.status}"


class ConsentRecordQuerySet(models.QuerySet):
    PERSONAL_FIELDS = {"email": "", "ip": None, "user_agent": ""}

    def update(self, **kwargs):
        raise TypeError("Consent records are append-only.")

    def delete(self):
        raise TypeError("Consent records are append-only.")

    def redact_personal_fields(self) -> int:
        """GDPR erasure, the one change ever made to consent records: the proof of what was
        agreed stays, the person's address, IP and browser go."""
        return super().update(**self.PERSONAL_FIELDS)


class ConsentRecord(WorkspaceOwned):
    """Append-only proof of consent; only GDPR erasure redacts its personal fields."""

    class Action(models.TextChoices):
        GRANTED = "granted", "Granted"
        WITHDRAWN = "withdrawn", "Withdrawn"
        CONFIRMED = "confirmed", "Confirmed"

    class Method(models.TextChoices):
        FORM = "form", "Signup form"
        IMPORT = "import", "Import"
        ADMIN = "admin", "By a team member"
        API = "api", "API"

    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.SET_NULL, related_name="consent_records"
    )
    contact_list = models.ForeignKey(
        ContactList, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    purpose = models.CharField(max_length=120, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    method = models.CharField(max_length=10, choices=Method.choices)
    source = models.CharField(max_length=500, blank=True)
    # A campaign lives in a higher app: its id and name are copied here, not referenced.
    campaign_id = models.BigIntegerField(null=True, blank=True)
    campaign_name = models.CharField(max_length=200, blank=True)
    email = models.CharField(max_length=320, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    consent_text = models.TextField(blank=True)
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    objects = ConsentRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["contact", "-created_at"], name="contacts_consent_idx")]

    def __str__(self) -> str:
        return f"{self.action} ({self.method}) {self.created_at:%Y-%m-%d}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise TypeError("Consent records are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("Consent records are append-only.")


class Suppression(models.Model):
    """An address that must not receive mail: per workspace, or platform-wide (no workspace).

    The address is matched by a keyed hash of its lower-cased form, so an erased person's
    address can be refused by imports without being stored.
    """

    class Reason(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCES = "soft_bounces", "Repeated soft bounces"
        COMPLAINT = "complaint", "Spam complaint"
        MANUAL = "manual", "Added by hand"
        ERASED = "erased", "Erased (GDPR)"

    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.CASCADE, db_index=False
    )
    address_hash = models.CharField(max_length=64)
    email = models.CharField(max_length=320, blank=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    source = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "address_hash"],
                name="contacts_suppression_unique",
                nulls_distinct=False,
            ),
        ]
        indexes = [models.Index(fields=["address_hash"], name="contacts_suppression_hash_idx")]

    def __str__(self) -> str:
        return f"{self.email or self.address_hash[:12]} ({self.reason})"

    @property
    def is_platform_wide(self) -> bool:
        return self.workspace_id is None


class Segment(WorkspaceOwned):
    """A saved audience rule: nested AND/OR groups of conditions, compiled to one SQL query."""

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    # {"op": "and"|"or", "rules": [{"field": ..., "operator": ..., "value": ...} | group]}
    definition = models.JSONField(default=dict)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name"], name="contacts_segment_name_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ContactImport(WorkspaceOwned):
    """One CSV upload on its way in: sniffed, mapped by the user, then run by a worker."""

    class Status(models.TextChoices):
        MAPPING = "mapping", "Waiting for column mapping"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Importing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    file_name = models.CharField(max_length=300, help_text="Storage name of the uploaded file.")
    original_name = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField(default=0)
    encoding = models.CharField(max_length=20)
    delimiter = models.CharField(max_length=1)
    has_header = models.BooleanField(default=True)
    columns = models.JSONField(default=list)
    preview = models.JSONField(default=list)
    # Column index (as text) -> "email" | "first_name" | "last_name" | "attr:<key>".
    mapping = models.JSONField(default=dict, blank=True)
    lists = models.ManyToManyField(ContactList, blank=True, related_name="+")
    update_existing = models.BooleanField(default=True)
    consent_basis = models.CharField(max_length=300, blank=True)
    consent_source = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.MAPPING)
    total_bytes_read = models.BigIntegerField(default=0)
    rows_processed = models.IntegerField(default=0)
    created_count = models.IntegerField(default=0)
    updated_count = models.IntegerField(default=0)
    skipped_count = models.IntegerField(default=0)
    invalid_count = models.IntegerField(default=0)
    report_name = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import of {self.original_name}"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.size_bytes:
            return 0
        return min(99, int(self.total_bytes_read * 100 / self.size_bytes))


class ContactExport(WorkspaceOwned):
    """A CSV of a list, a segment or a filter, written by a worker, downloaded by members."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Writing"
        DONE = "done", "Ready"
        FAILED = "failed", "Failed"

    description = models.CharField(max_length=300)
    # What to export: {"list": id} | {"segment": id} | {"filters": {...}} (the table's filters).
    spec = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    row_count = models.IntegerField(default=0)
    file_name = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.description


def signup_form_public_id_new() -> str:
    """An unguessable id for the public URL of a signup form (forms are not enumerable)."""
    return secrets.token_urlsafe(12)


class SignupForm(WorkspaceOwned):
    """A public form that subscribes people to one list, hosted by us or embedded elsewhere."""

    # In the public URL /f/<public_id>/ and in snippets pasted into other sites: never changes.
    public_id = models.CharField(
        max_length=32, unique=True, default=signup_form_public_id_new, editable=False
    )
    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="forms")
    name = models.CharField(max_length=120)
    title = models.CharField(max_length=200, default="Subscribe to our newsletter")
    intro = models.TextField(blank=True)
    consent_text = models.TextField(
        default="I agree to receive emails and know that I can unsubscribe at any time."
    )
    button_label = models.CharField(max_length=60, default="Subscribe")
    success_message = models.CharField(
        max_length=300, default="Thanks! Check your inbox to confirm your subscription."
    )
    ask_name = models.BooleanField(default=True)
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ImportRejection(WorkspaceOwned):
    """A row an import did not write, with the reason: the downloadable report."""

    class Kind(models.TextChoices):
        INVALID = "invalid", "Invalid"
        SKIPPED = "skipped", "Skipped"

    contact_import = models.ForeignKey(
        ContactImport, on_delete=models.CASCADE, related_name="rejections"
    )
    line = models.IntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    reason = models.CharField(max_length=300)
    raw = models.TextField(blank=True)

    class Meta:
        ordering = ["line"]
        indexes = [models.Index(fields=["contact_import", "line"], name="contacts_rejection_idx")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"
