"""Personal data the contacts app keeps about a person: export and erase hooks.

The compliance app discovers every app's personal_data.py; each exports `export()` and
`erase()` taking the workspace and the address, an `ERASE_ORDER` (lower runs first),
`MODELS` (the models with personal fields its hooks cover) and `retain(*, older_than)`.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import Q

from accounts.models import Workspace
from contacts.models import (
    ConsentRecord,
    Contact,
    ContactImport,
    ImportRejection,
    Subscription,
    Suppression,
)
from contacts.suppressions import address_hash, address_hashes

MODELS = [Contact, ConsentRecord, Suppression, ImportRejection]
ERASE_ORDER = 100  # after the apps that refer to contacts


def _contacts(workspace: Workspace, email: str):
    return Contact.objects.for_workspace(workspace).filter(email__iexact=email.strip())


def export(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    """Every row about the person, by table, as plain values."""
    contacts = _contacts(workspace, email)
    contact_ids = list(contacts.values_list("pk", flat=True))
    hashes = address_hashes(email)
    return {
        "contacts": list(
            contacts.values(
                "email",
                "first_name",
                "last_name",
                "attributes",
                "status",
                "created_at",
                "updated_at",
                "last_sent_at",
                "last_opened_at",
                "last_clicked_at",
            )
        ),
        "subscriptions": list(
            Subscription.objects.filter(contact_id__in=contact_ids).values(
                "contact_list__name", "status", "created_at", "subscribed_at", "unsubscribed_at"
            )
        ),
        "consent_records": list(
            ConsentRecord.objects.filter(
                Q(contact_id__in=contact_ids) | Q(email__iexact=email.strip()),
                workspace=workspace,
            ).values(
                "contact_list__name",
                "purpose",
                "action",
                "method",
                "source",
                "campaign_name",
                "email",
                "ip",
                "user_agent",
                "consent_text",
                "created_at",
            )
        ),
        "suppressions": list(
            Suppression.objects.filter(workspace=workspace, address_hash__in=hashes).values(
                "email", "reason", "source", "created_at"
            )
        ),
        "import_rejections": list(
            ImportRejection.objects.for_workspace(workspace)
            .filter(raw__icontains=email.strip())
            .values("contact_import__original_name", "line", "reason", "raw")
        ),
    }


@transaction.atomic
def erase(*, workspace: Workspace, email: str) -> None:
    """Delete the contact, redact consent records, keep only a hashed suppression tombstone."""
    contacts = _contacts(workspace, email)
    contact_ids = list(contacts.values_list("pk", flat=True))
    ConsentRecord.objects.filter(
        Q(contact_id__in=contact_ids) | Q(email__iexact=email.strip()), workspace=workspace
    ).redact_personal_fields()
    contacts.delete()
    ImportRejection.objects.for_workspace(workspace).filter(raw__icontains=email.strip()).delete()
    # Previews of the first rows, shown on the mapping screen, may hold the address too.
    for contact_import in ContactImport.objects.for_workspace(workspace).filter(
        preview__icontains=email.strip()
    ):
        contact_import.preview = []
        contact_import.save(update_fields=["preview"])
    hashes = address_hashes(email)
    Suppression.objects.filter(workspace=workspace, address_hash__in=hashes).delete()
    # The tombstone: a later import of this address is refused without storing it.
    Suppression.objects.create(
        workspace=workspace,
        address_hash=address_hash(email),
        email="",
        reason=Suppression.Reason.ERASED,
        source="GDPR erasure",
    )


def retain(*, older_than: datetime) -> int:
    """Rejected import rows keep their line and reason; their raw text (the person's data)
    goes once the import is older than the retention period."""
    return (
        ImportRejection.objects.filter(contact_import__created_at__lt=older_than)
        .exclude(raw="")
        .update(raw="")
    )
