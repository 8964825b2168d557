"""The workspace's audit log as its owners and admins read it: filters and pages."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet

from accounts.models import AuditEntry, Membership, Workspace

PAGE_SIZE = 50

# Category -> (label, the verbs it covers). Verbs are "<noun>.<what happened>".
CATEGORIES: dict[str, tuple[str, Q]] = {
    "imports": ("Imports", Q(verb__startswith="contacts.import")),
    "exports": (
        "Exports",
        Q(verb="contacts.exported") | Q(verb="gdpr.exported") | Q(verb="gdpr.export_requested"),
    ),
    "deletions": (
        "Deletions",
        (Q(verb__endswith=".deleted") | Q(verb__endswith=".removed"))
        & ~Q(verb__startswith="suppression."),
    ),
    "suppressions": (
        "Suppression and unsubscribes",
        Q(verb__startswith="suppression.") | Q(verb__contains="unsubscribed"),
    ),
    "roles": ("Members and roles", Q(verb__startswith="member.")),
    "domains": (
        "Sending domains",
        Q(verb__startswith="sending_domain.") | Q(verb__startswith="dkim_key."),
    ),
    "erasures": ("GDPR erasures", Q(verb="gdpr.erased") | Q(verb="gdpr.erasure_requested")),
}
SYSTEM_ACTOR = "system"


@dataclass
class AuditFilters:
    category: str = ""
    actor: str = ""  # a user id, or "system"
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_query(cls, query) -> "AuditFilters":
        def day(name: str) -> date | None:
            try:
                return date.fromisoformat(query.get(name, ""))
            except ValueError:
                return None

        category = query.get("category", "")
        actor = query.get("actor", "")
        return cls(
            category=category if category in CATEGORIES else "",
            actor=actor if actor == SYSTEM_ACTOR or actor.isdigit() else "",
            date_from=day("from"),
            date_to=day("to"),
        )


@dataclass
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: int | None
    is_first: bool


def audit_actor_choices(*, workspace: Workspace) -> list[tuple[str, str]]:
    members = (
        Membership.objects.for_workspace(workspace).select_related("user").order_by("user__email")
    )
    return [(str(m.user_id), m.user.email) for m in members] + [(SYSTEM_ACTOR, "System")]


def _day_start(day: date, workspace: Workspace) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.combine(day, time.min, tzinfo=ZoneInfo(workspace.time_zone))


def audit_entry_list(*, workspace: Workspace, filters: AuditFilters) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.filter(workspace=workspace)
    if filters.category:
        entries = entries.filter(CATEGORIES[filters.category][1])
    if filters.actor == SYSTEM_ACTOR:
        entries = entries.filter(actor__isnull=True)
    elif filters.actor:
        entries = entries.filter(actor_id=int(filters.actor))
    if filters.date_from:
        entries = entries.filter(created_at__gte=_day_start(filters.date_from, workspace))
    if filters.date_to:
        entries = entries.filter(
            created_at__lt=_day_start(filters.date_to + timedelta(days=1), workspace)
        )
    return entries.order_by("-created_at", "-id")


def audit_entry_page(*, workspace: Workspace, filters: AuditFilters, after: str = "") -> AuditPage:
    """One page, newest first; `after` is the id of the last entry of the previous page
    (keyset paging on (created_at, id): no OFFSET over a table that only grows)."""
    entries = audit_entry_list(workspace=workspace, filters=filters)
    cursor = (
        AuditEntry.objects.filter(workspace=workspace, pk=int(after))
        .values_list("created_at", "pk")
        .first()
        if after.isdigit()
        else None
    )
    if cursor:
        created_at, pk = cursor
        entries = entries.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    found = list(entries[: PAGE_SIZE + 1])
    has_more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    return AuditPage(
        entries=found,
        next_cursor=found[-1].pk if has_more else None,
        is_first=cursor is None,
    )
