"""Bulk actions of the contacts table, on a selection or on a whole filter, set-based.

Each action takes a queryset of contacts (never a list of objects) and works through SQL
statements over it, in chunks where a consent record must be written per contact.
"""

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import User, Workspace
from contacts.models import ConsentRecord, Contact, ContactList, Subscription
from contacts.suppressions import suppressed_hashes

CHUNK_SIZE = 5_000


def _consent_rows(
    *, workspace: Workspace, contact_list: ContactList, pairs, action: str, actor: User, now
) -> list[ConsentRecord]:
    return [
        ConsentRecord(
            workspace=workspace,
            contact_id=contact_id,
            contact_list=contact_list,
            action=action,
            method=ConsentRecord.Method.ADMIN,
            source="Bulk action in the contacts table",
            email=email,
            actor=actor if actor is not None and actor.pk else None,
            created_at=now,
        )
        for contact_id, email in pairs
    ]


@transaction.atomic
def contacts_add_to_list(
    *,
    workspace: Workspace,
    contacts: QuerySet[Contact],
    contact_list: ContactList,
    acting_user: User,
) -> int:
    """Subscribe active, unsuppressed contacts that have no subscription to the list yet.

    Those who unsubscribed from it (or are pending) are left as they are: a bulk action
    never overrides a person's own choice. Returns how many were subscribed.
    """
    candidates = (
        contacts.filter(workspace=workspace, status=Contact.Status.ACTIVE)
        .exclude(
            Exists(Subscription.objects.filter(contact=OuterRef("pk"), contact_list=contact_list))
        )
        .order_by("id")
    )
    now, added, last_id = timezone.now(), 0, 0
    table = Subscription._meta.db_table
    while True:
        chunk = list(candidates.filter(id__gt=last_id).values_list("id", "email")[:CHUNK_SIZE])
        if not chunk:
            break
        last_id = chunk[-1][0]
        suppressed = suppressed_hashes(workspace=workspace, addresses=[e for _, e in chunk])
        keep = [(pk, email) for pk, email in chunk if email.lower() not in suppressed]
        if not keep:
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} "  # noqa: S608 - the table name is a constant
                "(workspace_id, contact_id, contact_list_id, status, created_at, subscribed_at) "
                "SELECT %s, ids.id, %s, 'subscribed', %s, %s FROM unnest(%s::bigint[]) AS ids(id) "
                "ON CONFLICT (contact_id, contact_list_id) DO NOTHING RETURNING contact_id",
                [workspace.pk, contact_list.pk, now, now, [pk for pk, _ in keep]],
            )
            inserted = {row[0] for row in cursor.fetchall()}
        emails = dict(keep)
        ConsentRecord.objects.bulk_create(
            _consent_rows(
                workspace=workspace,
                contact_list=contact_list,
                pairs=[(pk, emails[pk]) for pk in sorted(inserted)],
                action=ConsentRecord.Action.GRANTED,
                actor=acting_user,
                now=now,
            ),
            batch_size=1000,
        )
        added += len(inserted)
    if added:
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="contacts.added_to_list",
            target=contact_list,
            details={"count": added},
        )
    return added


@transaction.atomic
def contacts_remove_from_list(
    *,
    workspace: Workspace,
    contacts: QuerySet[Contact],
    contact_list: ContactList,
    acting_user: User,
) -> int:
    """Delete subscribed and pending memberships of the list.

    An unsubscription is kept: it is what stops a later import or bulk add from
    subscribing the person again.
    """
    removed, _ = (
        Subscription.objects.filter(
            workspace=workspace,
            contact_list=contact_list,
            contact__in=contacts.filter(workspace=workspace).values("id"),
        )
        .exclude(status=Subscription.Status.UNSUBSCRIBED)
        .delete()
    )
    if removed:
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="contacts.removed_from_list",
            target=contact_list,
            details={"count": removed},
        )
    return removed


@transaction.atomic
def contacts_unsubscribe_from_list(
    *,
    workspace: Workspace,
    contacts: QuerySet[Contact],
    contact_list: ContactList,
    acting_user: User,
) -> int:
    """Unsubscribe from the list in one UPDATE; each change is recorded as withdrawn consent."""
    now = timezone.now()
    ids_sql, ids_params = contacts.filter(workspace=workspace).values("id").query.sql_with_params()
    subscriptions, contact_table = Subscription._meta.db_table, Contact._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {subscriptions} AS s SET status = 'unsubscribed', unsubscribed_at = %s "  # noqa: S608
            f"FROM {contact_table} AS c WHERE c.id = s.contact_id AND s.contact_list_id = %s "
            f"AND s.status <> 'unsubscribed' AND s.contact_id IN ({ids_sql}) "
            "RETURNING s.contact_id, c.email",
            [now, contact_list.pk, *ids_params],
        )
        changed = cursor.fetchall()
    ConsentRecord.objects.bulk_create(
        _consent_rows(
            workspace=workspace,
            contact_list=contact_list,
            pairs=changed,
            action=ConsentRecord.Action.WITHDRAWN,
            actor=acting_user,
            now=now,
        ),
        batch_size=1000,
    )
    if changed:
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="contacts.unsubscribed_from_list",
            target=contact_list,
            details={"count": len(changed)},
        )
    return len(changed)
