from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts.addresses import InvalidAddress, normalize_email
from contacts.attributes import InvalidValue, parse_attribute
from contacts.models import Contact, Field
from contacts.suppressions import suppressed_hashes

_DELETE_CHUNK = 2_000


def attributes_clean(*, workspace: Workspace, values: dict[str, str]) -> dict:
    """Typed attribute values for the workspace's fields; unknown keys are refused."""
    fields = {field.key: field for field in Field.objects.for_workspace(workspace)}
    cleaned, problems = {}, []
    for key, text in values.items():
        field = fields.get(key)
        if field is None:
            problems.append(f"{key}: no such field")
            continue
        try:
            value = parse_attribute(field_type=field.type, choices=field.choices, text=text)
        except InvalidValue as error:
            problems.append(f"{field.label}: {error}")
            continue
        if value is not None:
            cleaned[key] = value
    if problems:
        raise ApplicationError("Some values are not valid.", extra={"problems": problems})
    return cleaned


@transaction.atomic
def contact_create(
    *,
    workspace: Workspace,
    email: str,
    first_name: str = "",
    last_name: str = "",
    attributes: dict | None = None,
    acting_user: User | None,
) -> Contact:
    try:
        normalized = normalize_email(email)
    except InvalidAddress as error:
        raise ApplicationError(f"{email!r} is not a valid address: {error}.") from None
    if suppressed_hashes(workspace=workspace, addresses=[normalized]):
        raise ApplicationError(f"{normalized} is on a suppression list and cannot be added.")
    try:
        with transaction.atomic():
            contact = Contact.objects.create(
                workspace=workspace,
                email=normalized,
                first_name=first_name.strip()[:150],
                last_name=last_name.strip()[:150],
                attributes=attributes or {},
            )
    except IntegrityError:
        raise ApplicationError(f"{normalized} is already a contact.") from None
    audit_record(workspace=workspace, actor=acting_user, verb="contact.created", target=contact)
    return contact


@transaction.atomic
def contact_update(
    *,
    contact: Contact,
    first_name: str,
    last_name: str,
    attributes: dict,
    acting_user: User | None,
) -> Contact:
    contact.first_name, contact.last_name = first_name.strip()[:150], last_name.strip()[:150]
    contact.attributes = attributes
    contact.updated_at = timezone.now()
    contact.save(update_fields=["first_name", "last_name", "attributes", "updated_at"])
    return contact


@transaction.atomic
def contacts_delete(
    *, workspace: Workspace, contacts: QuerySet[Contact], acting_user: User | None
) -> int:
    """Delete contacts (their consent records stay, detached); audited with the count.

    Deleted in chunks of ids, so that a whole filter of a million contacts never sits in
    memory while Django's collector cascades to the rows that point at them.
    """
    contacts = contacts.filter(workspace=workspace).order_by("id")
    count = 0
    while True:
        chunk = list(contacts.values_list("id", flat=True)[:_DELETE_CHUNK])
        if not chunk:
            break
        Contact.objects.filter(workspace=workspace, pk__in=chunk).delete()
        count += len(chunk)
    if count:
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="contacts.deleted",
            details={"count": count},
        )
    return count
