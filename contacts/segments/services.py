"""Writes of saved segments; every one is audited."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts.models import Segment
from contacts.segments.compiler import definition_clean


def _name_clean(name: str) -> str:
    name = name.strip()
    if not name:
        raise ApplicationError("Give the segment a name.")
    return name[:120]


@transaction.atomic
def segment_create(
    *,
    workspace: Workspace,
    name: str,
    description: str = "",
    definition: dict,
    acting_user: User | None,
) -> Segment:
    """Save a new segment; its definition is validated first (SegmentDefinitionError)."""
    definition = definition_clean(workspace=workspace, definition=definition)
    try:
        with transaction.atomic():
            segment = Segment.objects.create(
                workspace=workspace,
                name=_name_clean(name),
                description=description.strip(),
                definition=definition,
                created_by=acting_user if acting_user is not None and acting_user.pk else None,
            )
    except IntegrityError:
        raise ApplicationError(f"A segment named {name.strip()!r} already exists.") from None
    audit_record(workspace=workspace, actor=acting_user, verb="segment.created", target=segment)
    return segment


@transaction.atomic
def segment_update(
    *,
    segment: Segment,
    name: str,
    description: str = "",
    definition: dict,
    acting_user: User | None,
) -> Segment:
    definition = definition_clean(workspace=segment.workspace, definition=definition)
    changed = [
        label
        for label, old, new in (
            ("name", segment.name, _name_clean(name)),
            ("description", segment.description, description.strip()),
            ("rules", segment.definition, definition),
        )
        if old != new
    ]
    segment.name, segment.description = _name_clean(name), description.strip()
    segment.definition, segment.updated_at = definition, timezone.now()
    try:
        with transaction.atomic():
            segment.save(update_fields=["name", "description", "definition", "updated_at"])
    except IntegrityError:
        raise ApplicationError(f"A segment named {segment.name!r} already exists.") from None
    audit_record(
        workspace=segment.workspace,
        actor=acting_user,
        verb="segment.updated",
        target=segment,
        details={"changed": changed},
    )
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment, acting_user: User | None) -> None:
    audit_record(
        workspace=segment.workspace,
        actor=acting_user,
        verb="segment.deleted",
        target=segment,
        details={"definition": segment.definition},
    )
    segment.delete()
