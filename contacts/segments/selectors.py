"""Reads of saved segments. Their contacts: contacts/segments/compiler.py (segment_contacts)."""

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Workspace
from contacts.models import Contact, Segment


def segment_list(*, workspace: Workspace) -> QuerySet[Segment]:
    return Segment.objects.for_workspace(workspace).select_related("created_by").order_by("name")


def segment_get(*, workspace: Workspace, segment_id: int) -> Segment:
    """The workspace's segment, or 404 (another workspace's segment is simply not there)."""
    return get_object_or_404(Segment.objects.for_workspace(workspace), pk=segment_id)


def segment_preview(*, contacts: QuerySet[Contact], limit: int = 10) -> list[Contact]:
    """The newest matching contacts, read with the (workspace, -created_at, -id) index."""
    return list(
        contacts.order_by("-created_at", "-id").only(
            "email", "first_name", "last_name", "status", "created_at"
        )[:limit]
    )
