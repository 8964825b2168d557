"""Contact lists: create, rename, delete."""

from django.db import IntegrityError, transaction

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts.models import ContactList


@transaction.atomic
def list_create(
    *, workspace: Workspace, name: str, description: str = "", opt_in: str, acting_user: User
) -> ContactList:
    try:
        with transaction.atomic():
            contact_list = ContactList.objects.create(
                workspace=workspace,
                name=name.strip(),
                description=description.strip(),
                opt_in=ContactList.OptIn(opt_in),
            )
    except IntegrityError:
        raise ApplicationError(f"A list named {name.strip()!r} already exists.") from None
    audit_record(workspace=workspace, actor=acting_user, verb="list.created", target=contact_list)
    return contact_list


@transaction.atomic
def list_update(
    *, contact_list: ContactList, name: str, description: str, opt_in: str, acting_user: User
) -> ContactList:
    contact_list.name, contact_list.description = name.strip(), description.strip()
    contact_list.opt_in = ContactList.OptIn(opt_in)
    try:
        with transaction.atomic():
            contact_list.save(update_fields=["name", "description", "opt_in"])
    except IntegrityError:
        raise ApplicationError(f"A list named {name.strip()!r} already exists.") from None
    audit_record(
        workspace=contact_list.workspace,
        actor=acting_user,
        verb="list.updated",
        target=contact_list,
    )
    return contact_list


@transaction.atomic
def list_delete(*, contact_list: ContactList, acting_user: User) -> None:
    """Delete a list and its subscriptions; the consent records stay, detached from it."""
    audit_record(
        workspace=contact_list.workspace,
        actor=acting_user,
        verb="list.deleted",
        target=contact_list,
    )
    contact_list.delete()
