"""Custom fields: definitions of the typed keys of Contact.attributes."""

from django.db import IntegrityError, connection, transaction

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts.models import Contact, Field

# Keys that would shadow the built-in columns in merge tags, imports and segments.
RESERVED_KEYS = frozenset(
    {"email", "first_name", "last_name", "status", "created_at", "updated_at", "id", "lists"}
)

# SQL that is true for a stored value (v, a jsonb) that a field of this type can hold.
_VALID_VALUE_SQL = {
    Field.Type.TEXT: "jsonb_typeof(v) = 'string'",
    Field.Type.NUMBER: "jsonb_typeof(v) = 'number'",
    Field.Type.BOOLEAN: "jsonb_typeof(v) = 'boolean'",
    Field.Type.DATE: "jsonb_typeof(v) = 'string' AND v #>> '{}' ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'",
    Field.Type.CHOICE: "jsonb_typeof(v) = 'string' AND (v #>> '{}') = ANY(%(choices)s)",
}


def field_incompatible_count(
    *, workspace: Workspace, key: str, field_type: str, choices: list[str]
) -> int:
    """How many contacts hold a value for `key` that a field of `field_type` cannot hold."""
    condition = _VALID_VALUE_SQL[Field.Type(field_type)]
    sql = (
        "SELECT count(*) FROM (SELECT attributes -> %(key)s AS v "  # noqa: S608 - constants
        f"FROM {Contact._meta.db_table} WHERE workspace_id = %(workspace)s "
        f"AND attributes ? %(key)s) AS stored WHERE NOT ({condition})"
    )
    params = {"key": key, "workspace": workspace.pk, "choices": list(choices)}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def _clean_choices(field_type: str, choices: list[str]) -> list[str]:
    if field_type != Field.Type.CHOICE:
        return []
    cleaned = list(dict.fromkeys(choice.strip() for choice in choices if choice.strip()))
    if not cleaned:
        raise ApplicationError("A choice field needs at least one choice.")
    return cleaned


def _check_key(key: str) -> None:
    if key in RESERVED_KEYS:
        raise ApplicationError(f"{key!r} is a built-in column; choose another key.")


@transaction.atomic
def field_create(
    *,
    workspace: Workspace,
    key: str,
    label: str,
    field_type: str,
    choices: list[str],
    acting_user: User,
) -> Field:
    _check_key(key)
    choices = _clean_choices(field_type, choices)
    incompatible = field_incompatible_count(
        workspace=workspace, key=key, field_type=field_type, choices=choices
    )
    if incompatible:
        raise ApplicationError(
            f"{incompatible} contacts already hold a {key!r} value that is not "
            f"{Field.Type(field_type).label.lower()}."
        )
    try:
        with transaction.atomic():
            field = Field.objects.create(
                workspace=workspace,
                key=key,
                label=label.strip(),
                type=Field.Type(field_type),
                choices=choices,
            )
    except IntegrityError:
        raise ApplicationError(f"A field with the key {key!r} already exists.") from None
    audit_record(workspace=workspace, actor=acting_user, verb="field.created", target=field)
    return field


@transaction.atomic
def field_update(
    *, field: Field, label: str, field_type: str, choices: list[str], acting_user: User
) -> Field:
    """Relabel or retype a field; a type (or choice list) that stored values can't satisfy
    is refused, so that segments never compare a number field's text."""
    choices = _clean_choices(field_type, choices)
    if field_type != field.type or (field_type == Field.Type.CHOICE and choices != field.choices):
        incompatible = field_incompatible_count(
            workspace=field.workspace, key=field.key, field_type=field_type, choices=choices
        )
        if incompatible:
            raise ApplicationError(
                f"{incompatible} contacts hold {field.label} values that a "
                f"{Field.Type(field_type).label.lower()} field cannot hold.",
                extra={"incompatible_count": incompatible},
            )
    field.label, field.type, field.choices = label.strip(), Field.Type(field_type), choices
    field.save(update_fields=["label", "type", "choices"])
    audit_record(
        workspace=field.workspace,
        actor=acting_user,
        verb="field.updated",
        target=field,
        details={"type": field.type},
    )
    return field


@transaction.atomic
def field_delete(*, field: Field, acting_user: User) -> int:
    """Delete a field and its values on every contact; returns how many contacts lost one."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Contact._meta.db_table} SET attributes = attributes - %(key)s "  # noqa: S608
            "WHERE workspace_id = %(workspace)s AND attributes ? %(key)s",
            {"key": field.key, "workspace": field.workspace_id},
        )
        cleared = cursor.rowcount
    audit_record(
        workspace=field.workspace,
        actor=acting_user,
        verb="field.deleted",
        target=field,
        details={"cleared_count": cleared},
    )
    field.delete()
    return cleared
