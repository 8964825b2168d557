"""Contact exports: a CSV of a list, a segment or a filter, written by a worker to private
storage and downloaded through a view that checks the workspace."""

import csv
import secrets
import tempfile
from collections.abc import Iterable

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from accounts.audit import audit_record
from accounts.downloads import workspace_file_name
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts.models import Contact, ContactExport, ContactList, Field, Segment, Subscription
from contacts.segments.compiler import segment_contacts

BASE_COLUMNS = ["email", "first_name", "last_name", "status", "created_at"]
# A spreadsheet reads a cell starting with one of these as a formula (or, for tab and CR,
# may shift it into one): CSV injection. OWASP's advice: prefix a single quote.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str | int | float:
    """A value as a safe CSV cell: text that a spreadsheet would run as a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def export_contacts(*, export: ContactExport) -> QuerySet[Contact]:
    """The contacts an export's spec names: {"list": id} (its subscribers), {"segment": id},
    or {"filters": {...}} (the contacts table's filters, narrowed to "ids" if given)."""
    from contacts.selectors import ContactFilters, contact_filter

    workspace, spec = export.workspace, export.spec or {}
    if "list" in spec:
        contact_list = ContactList.objects.for_workspace(workspace).get(pk=spec["list"])
        return Contact.objects.for_workspace(workspace).filter(
            Exists(
                Subscription.objects.filter(
                    contact=OuterRef("pk"),
                    contact_list=contact_list,
                    status=Subscription.Status.SUBSCRIBED,
                )
            )
        )
    if "segment" in spec:
        segment = Segment.objects.for_workspace(workspace).get(pk=spec["segment"])
        return segment_contacts(segment=segment).filter(workspace=workspace)
    filters = ContactFilters.from_dict(spec.get("filters") or {})
    contacts = contact_filter(workspace=workspace, filters=filters)
    if "ids" in spec:
        contacts = contacts.filter(pk__in=[int(pk) for pk in spec["ids"]])
    return contacts


@transaction.atomic
def contact_export_request(
    *, workspace: Workspace, spec: dict, description: str, acting_user: User | None
) -> ContactExport:
    """Queue an export; a worker writes the file. Audited as contacts.exported."""
    from contacts.tasks import contact_export_run_task

    export = ContactExport.objects.create(
        workspace=workspace,
        description=description[:300],
        spec=spec,
        created_by=acting_user if acting_user is not None and acting_user.pk else None,
    )
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="contacts.exported",
        target=export,
        details={"spec": spec},
    )
    transaction.on_commit(lambda: contact_export_run_task.delay(export.pk))
    return export


def _rows(contacts: QuerySet[Contact], keys: list[str]) -> Iterable[list]:
    fields = ["email", "first_name", "last_name", "status", "created_at", "attributes"]
    for email, first, last, status, created_at, attributes in (
        contacts.order_by("id").values_list(*fields).iterator(chunk_size=5_000)
    ):
        attributes = attributes or {}
        yield [
            csv_cell(email),
            csv_cell(first),
            csv_cell(last),
            status,
            created_at.isoformat(timespec="seconds"),
            *(csv_cell(attributes.get(key)) for key in keys),
        ]


def contact_export_run(*, export_id: int) -> ContactExport:
    """Write the CSV of a queued export; a redelivered task rewrites it, a finished one stays."""
    claimed = ContactExport.objects.filter(
        pk=export_id, status__in=[ContactExport.Status.QUEUED, ContactExport.Status.RUNNING]
    ).update(status=ContactExport.Status.RUNNING)
    export = ContactExport.objects.select_related("workspace").get(pk=export_id)
    if not claimed:
        return export
    try:
        contacts = export_contacts(export=export)
        keys = list(
            Field.objects.for_workspace(export.workspace)
            .order_by("key")
            .values_list("key", flat=True)
        )
        row_count = 0
        with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(BASE_COLUMNS + keys)
            for row in _rows(contacts, keys):
                writer.writerow(row)
                row_count += 1
            handle.flush()
            handle.seek(0)
            relative = f"exports/contacts-{export.pk}-{secrets.token_hex(8)}.csv"
            name = default_storage.save(
                workspace_file_name(workspace=export.workspace, relative=relative), File(handle)
            )
    except (ApplicationError, ContactList.DoesNotExist, Segment.DoesNotExist) as error:
        message = getattr(error, "message", None) or "The list or segment no longer exists."
        ContactExport.objects.filter(pk=export.pk).update(
            status=ContactExport.Status.FAILED, error=message, finished_at=timezone.now()
        )
        export.refresh_from_db()
        return export
    ContactExport.objects.filter(pk=export.pk).update(
        status=ContactExport.Status.DONE,
        row_count=row_count,
        file_name=name,
        finished_at=timezone.now(),
    )
    export.refresh_from_db()
    return export
