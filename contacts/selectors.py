"""Read paths of the contacts pages: the table, one contact, lists, fields, suppressions."""

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Concat, Lower
from django.http import Http404
from django.utils import timezone

from accounts.models import Workspace
from contacts.models import (
    ConsentRecord,
    Contact,
    ContactExport,
    ContactList,
    Field,
    Segment,
    Subscription,
    Suppression,
)
from contacts.suppressions import address_hashes
from contacts.timeline import TimelineEvent, timeline_sources

PAGE_SIZE = 50
# Counting a million matches costs more than the page itself: above this, "10,000+".
COUNT_CAP = 10_000

SORTS = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "email": ("email_key",),
    "-email": ("-email_key",),
}


def contact_search_expression():
    """The text the contacts search looks in; a trigram index covers exactly this expression."""
    return Lower(Concat("email", Value(" "), "first_name", Value(" "), "last_name"))


@dataclass(frozen=True)
class ContactFilters:
    """The contacts table's filters, as the query string carries them."""

    q: str = ""
    status: str = ""
    list_id: int | None = None
    created_from: dt.date | None = None
    created_to: dt.date | None = None
    sort: str = "-created"

    @classmethod
    def from_dict(cls, data: Any) -> "ContactFilters":
        """Lenient parsing of GET data or a stored export spec: bad values are dropped."""

        def date_or_none(text):
            try:
                return dt.date.fromisoformat(str(text)) if text else None
            except ValueError:
                return None

        status = str(data.get("status") or "")
        list_text = str(data.get("list") or "")
        sort = str(data.get("sort") or "-created")
        return cls(
            q=str(data.get("q") or "").strip()[:200],
            status=status if status in Contact.Status.values else "",
            list_id=int(list_text) if list_text.isdigit() else None,
            created_from=date_or_none(data.get("created_from")),
            created_to=date_or_none(data.get("created_to")),
            sort=sort if sort in SORTS else "-created",
        )

    def as_dict(self) -> dict[str, str]:
        """The query-string form (empty values left out), also stored in export specs."""
        values = {
            "q": self.q,
            "status": self.status,
            "list": str(self.list_id) if self.list_id else "",
            "created_from": self.created_from.isoformat() if self.created_from else "",
            "created_to": self.created_to.isoformat() if self.created_to else "",
            "sort": self.sort if self.sort != "-created" else "",
        }
        return {key: value for key, value in values.items() if value}

    @property
    def is_filtered(self) -> bool:
        return bool(self.q or self.status or self.list_id or self.created_from or self.created_to)


def contact_filter(*, workspace: Workspace, filters: ContactFilters) -> QuerySet[Contact]:
    """Contacts of the workspace matching the filters, unordered."""
    contacts = Contact.objects.for_workspace(workspace)
    if filters.q:
        needle = filters.q.lower()
        contacts = contacts.annotate(search_text=contact_search_expression()).filter(
            search_text__contains=needle
        )
    if filters.status:
        contacts = contacts.filter(status=filters.status)
    if filters.list_id:
        contacts = contacts.filter(
            Exists(
                Subscription.objects.filter(
                    contact=OuterRef("pk"),
                    contact_list_id=filters.list_id,
                    status=Subscription.Status.SUBSCRIBED,
                )
            )
        )
    tz = timezone.get_current_timezone()
    if filters.created_from:
        start = dt.datetime.combine(filters.created_from, dt.time.min, tzinfo=tz)
        contacts = contacts.filter(created_at__gte=start)
    if filters.created_to:
        end = dt.datetime.combine(filters.created_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
        contacts = contacts.filter(created_at__lt=end)
    return contacts


@dataclass
class ContactPage:
    contacts: list[Contact]
    next_cursor: str = ""
    is_first: bool = True
    matching_count: int = 0
    is_count_capped: bool = False
    extra: dict = field(default_factory=dict)


def _cursor_encode(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _cursor_decode(cursor: str) -> list | None:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        return None
    return values if isinstance(values, list) else None


def _after_cursor(contacts: QuerySet[Contact], sort: str, cursor: str) -> QuerySet[Contact]:
    """Keyset pagination: rows strictly after the last row of the previous page."""
    values = _cursor_decode(cursor)
    if not values:
        return contacts
    try:
        if sort in ("-created", "created"):
            created_at, last_id = dt.datetime.fromisoformat(values[0]), int(values[1])
            if sort == "-created":
                return contacts.filter(
                    Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=last_id)
                )
            return contacts.filter(
                Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=last_id)
            )
        # Lower(email) is unique in a workspace: it alone is a total order.
        key = str(values[0])
        if sort == "email":
            return contacts.filter(email_key__gt=key)
        return contacts.filter(email_key__lt=key)
    except (ValueError, TypeError, IndexError):
        return contacts


def contact_page(
    *, workspace: Workspace, filters: ContactFilters, cursor: str = "", page_size: int = PAGE_SIZE
) -> ContactPage:
    """One page of the contacts table, with the (capped) number of matching contacts."""
    matching = contact_filter(workspace=workspace, filters=filters)
    ordered = matching.annotate(email_key=Lower("email")).order_by(*SORTS[filters.sort])
    if cursor:
        ordered = _after_cursor(ordered, filters.sort, cursor)
    rows = list(ordered[: page_size + 1])
    next_cursor = ""
    if len(rows) > page_size:
        rows = rows[:page_size]
        last = rows[-1]
        if filters.sort in ("-created", "created"):
            next_cursor = _cursor_encode([last.created_at.isoformat(), last.pk])
        else:
            next_cursor = _cursor_encode([last.email_key])
    if not cursor and not next_cursor:
        count, capped = len(rows), False
    else:
        count = matching.order_by()[: COUNT_CAP + 1].count()
        capped = count > COUNT_CAP
    return ContactPage(
        contacts=rows,
        next_cursor=next_cursor,
        is_first=not cursor,
        matching_count=min(count, COUNT_CAP),
        is_count_capped=capped,
    )


def contact_filter_ids(*, workspace: Workspace, ids: list[int]) -> QuerySet[Contact]:
    return Contact.objects.for_workspace(workspace).filter(pk__in=ids)


def contact_exists(*, workspace: Workspace) -> bool:
    return Contact.objects.for_workspace(workspace).exists()


def contact_get(*, workspace: Workspace, contact_id: int) -> Contact:
    contact = Contact.objects.for_workspace(workspace).filter(pk=contact_id).first()
    if contact is None:
        raise Http404("No such contact.")
    return contact


def contact_subscriptions(*, contact: Contact) -> QuerySet[Subscription]:
    return (
        Subscription.objects.filter(contact=contact)
        .select_related("contact_list")
        .order_by("contact_list__name")
    )


def contact_consent_records(*, contact: Contact) -> QuerySet[ConsentRecord]:
    return (
        ConsentRecord.objects.filter(contact=contact)
        .select_related("contact_list", "actor")
        .order_by("-created_at", "-id")
    )


def contact_timeline(
    *, contact: Contact, consent_records: list[ConsentRecord]
) -> list[TimelineEvent]:
    """What happened to a contact, newest first: creation, consent changes and what the
    sources higher apps registered in contacts.timeline add (sends, bounces, complaints)."""
    events = [TimelineEvent(at=contact.created_at, kind="created", title="Contact created")]
    for record in consent_records:
        where = record.contact_list.name if record.contact_list else record.purpose or "consent"
        events.append(
            TimelineEvent(
                at=record.created_at,
                kind=f"consent-{record.action}",
                title=f"Consent {record.get_action_display().lower()}: {where}",
                detail=record.get_method_display(),
            )
        )
    for label, value in (
        ("Last email sent", contact.last_sent_at),
        ("Last opened an email", contact.last_opened_at),
        ("Last clicked a link", contact.last_clicked_at),
    ):
        if value:
            events.append(TimelineEvent(at=value, kind="engagement", title=label))
    for source in timeline_sources:
        events.extend(source(contact))
    return sorted(events, key=lambda event: event.at, reverse=True)


def list_index(*, workspace: Workspace) -> QuerySet[ContactList]:
    """Lists with their subscriber counts by status, in one query."""

    def by_status(status: str) -> Count:
        return Count("subscriptions", filter=Q(subscriptions__status=status))

    return (
        ContactList.objects.for_workspace(workspace)
        .annotate(
            subscribed_count=by_status(Subscription.Status.SUBSCRIBED),
            pending_count=by_status(Subscription.Status.PENDING),
            unsubscribed_count=by_status(Subscription.Status.UNSUBSCRIBED),
        )
        .order_by("name")
    )


def list_choices(*, workspace: Workspace) -> QuerySet[ContactList]:
    return ContactList.objects.for_workspace(workspace).order_by("name")


def list_get(*, workspace: Workspace, list_id: int) -> ContactList:
    contact_list = ContactList.objects.for_workspace(workspace).filter(pk=list_id).first()
    if contact_list is None:
        raise Http404("No such list.")
    return contact_list


def field_list(*, workspace: Workspace) -> QuerySet[Field]:
    return Field.objects.for_workspace(workspace).order_by("label")


def field_get(*, workspace: Workspace, field_id: int) -> Field:
    found = Field.objects.for_workspace(workspace).filter(pk=field_id).first()
    if found is None:
        raise Http404("No such field.")
    return found


def segment_list(*, workspace: Workspace) -> QuerySet[Segment]:
    return Segment.objects.for_workspace(workspace).order_by("name")


def segment_get(*, workspace: Workspace, segment_id: int) -> Segment:
    segment = Segment.objects.for_workspace(workspace).filter(pk=segment_id).first()
    if segment is None:
        raise Http404("No such segment.")
    return segment


def suppression_list(*, workspace: Workspace, q: str = "") -> QuerySet[Suppression]:
    """This workspace's suppressions, newest first; q matches the address (or its hash)."""
    suppressions = Suppression.objects.filter(workspace=workspace)
    q = q.strip()
    if q:
        condition = Q(email__icontains=q)
        if "@" in q:
            condition |= Q(address_hash__in=address_hashes(q))
        suppressions = suppressions.filter(condition)
    return suppressions.order_by("-created_at", "-id")


def suppression_get(*, workspace: Workspace, suppression_id: int) -> Suppression:
    suppression = Suppression.objects.filter(workspace=workspace, pk=suppression_id).first()
    if suppression is None:
        raise Http404("No such suppression.")
    return suppression


def export_list(*, workspace: Workspace) -> QuerySet[ContactExport]:
    return ContactExport.objects.for_workspace(workspace).select_related("created_by")


def export_get(*, workspace: Workspace, export_id: int) -> ContactExport:
    export = ContactExport.objects.for_workspace(workspace).filter(pk=export_id).first()
    if export is None:
        raise Http404("No such export.")
    return export
