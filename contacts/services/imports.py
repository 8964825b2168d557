"""CSV imports: upload and sniff, map the columns, start, resume, report the rejected rows.

The worker's side, which streams the rows into PostgreSQL, is contacts/services/import_run.py.
"""

import uuid

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from accounts.audit import audit_record
from accounts.downloads import workspace_file_name
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts import csvfiles
from contacts.models import ContactImport, ContactList, Field
from contacts.services.exports import csv_cell

NAME_COLUMNS = {
    "email": ("email", "e-mail", "email address", "e-mail address", "mail", "emailaddress"),
    "first_name": ("first name", "firstname", "first_name", "given name", "forename", "vorname"),
    "last_name": ("last name", "lastname", "last_name", "surname", "family name", "nachname"),
}


def _storage_name(*, workspace: Workspace, original_name: str) -> str:
    return workspace_file_name(workspace=workspace, relative=f"imports/{uuid.uuid4().hex}.csv")


@transaction.atomic
def contact_import_upload(
    *, workspace: Workspace, upload: UploadedFile, acting_user: User
) -> ContactImport:
    """Store the upload privately and sniff it; a file that is not CSV is refused at once."""
    if upload.size > settings.CONTACT_IMPORT_MAX_BYTES:
        raise ApplicationError(too_large_message())
    upload.seek(0)
    try:
        shape = csvfiles.sniff(upload)
    except csvfiles.NotCsv as error:
        raise ApplicationError(str(error)) from None
    upload.seek(0)
    name = default_storage.save(
        _storage_name(workspace=workspace, original_name=upload.name), upload
    )
    contact_import = ContactImport.objects.create(
        workspace=workspace,
        file_name=name,
        original_name=(upload.name or "contacts.csv")[:255],
        size_bytes=upload.size,
        encoding=shape.encoding,
        delimiter=shape.delimiter,
        has_header=shape.has_header,
        columns=shape.columns,
        preview=shape.preview,
        mapping=mapping_guess(workspace=workspace, columns=shape.columns, preview=shape.preview),
        created_by=acting_user,
    )
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="contacts.import_uploaded",
        target=contact_import,
        details={"file": contact_import.original_name, "bytes": upload.size},
    )
    return contact_import


def too_large_message() -> str:
    megabytes = settings.CONTACT_IMPORT_MAX_BYTES // (1024 * 1024)
    return f"The file is larger than {megabytes} MB. Split it into smaller files."


def mapping_guess(*, workspace: Workspace, columns: list[str], preview: list[list[str]]) -> dict:
    """A first mapping from the header names (and from '@' in the data for the email)."""
    fields = {f.key: f for f in Field.objects.for_workspace(workspace)}
    labels = {f.label.strip().lower(): f.key for f in fields.values()}
    mapping: dict[str, str] = {}
    for index, column in enumerate(columns):
        name = column.strip().lower()
        target = next((t for t, names in NAME_COLUMNS.items() if name in names), None)
        if target is None and (name in fields or name in labels):
            target = f"attr:{labels.get(name, name)}"
        if target and target not in mapping.values():
            mapping[str(index)] = target
    if "email" not in mapping.values():
        for index in range(len(columns)):
            if preview and all("@" in (row[index] if index < len(row) else "") for row in preview):
                mapping[str(index)] = "email"
                break
    return mapping


def mapping_targets(*, workspace: Workspace) -> list[tuple[str, str]]:
    targets = [("", "Don't import"), ("email", "Email"), ("first_name", "First name")]
    targets.append(("last_name", "Last name"))
    targets += [
        (f"attr:{f.key}", f"{f.label} ({f.get_type_display().lower()})")
        for f in Field.objects.for_workspace(workspace)
    ]
    return targets


@transaction.atomic
def contact_import_start(
    *,
    contact_import: ContactImport,
    mapping: dict[str, str],
    list_ids: list[int],
    update_existing: bool,
    consent_basis: str,
    consent_source: str,
    acting_user: User,
) -> ContactImport:
    """Save the mapping and options, then hand the import to a worker."""
    from contacts.tasks import contact_import_run_task

    if contact_import.status != ContactImport.Status.MAPPING:
        raise ApplicationError("This import has already started.")
    mapping = {index: target for index, target in mapping.items() if target}
    targets = list(mapping.values())
    if targets.count("email") != 1:
        raise ApplicationError("Choose exactly one column for the email address.")
    if len(targets) != len(set(targets)):
        raise ApplicationError("Each field can come from one column only.")
    if not consent_basis.strip() or not consent_source.strip():
        raise ApplicationError("Say how these people gave their consent, and where.")
    workspace = contact_import.workspace
    lists = list(ContactList.objects.for_workspace(workspace).filter(pk__in=list_ids))
    if len(lists) != len(set(list_ids)):
        raise ApplicationError("Choose lists of this workspace.")
    contact_import.mapping = mapping
    contact_import.update_existing = update_existing
    contact_import.consent_basis = consent_basis.strip()[:300]
    contact_import.consent_source = consent_source.strip()[:500]
    contact_import.status = ContactImport.Status.QUEUED
    contact_import.save()
    contact_import.lists.set(lists)
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="contacts.import_started",
        target=contact_import,
        details={"lists": [c.name for c in lists], "update_existing": update_existing},
    )
    transaction.on_commit(lambda: contact_import_run_task.delay(contact_import.pk))
    return contact_import


@transaction.atomic
def contact_import_resume(*, contact_import: ContactImport, acting_user: User) -> ContactImport:
    """Start a failed import again; it continues after the rows it already wrote."""
    from contacts.tasks import contact_import_run_task

    if contact_import.status != ContactImport.Status.FAILED:
        raise ApplicationError("Only a failed import can be resumed.")
    contact_import.status = ContactImport.Status.QUEUED
    contact_import.save(update_fields=["status"])
    audit_record(
        workspace=contact_import.workspace,
        actor=acting_user,
        verb="contacts.import_resumed",
        target=contact_import,
    )
    transaction.on_commit(lambda: contact_import_run_task.delay(contact_import.pk))
    return contact_import


def contact_import_report_csv(*, contact_import: ContactImport):
    """The rejected rows as CSV lines (line, outcome, reason, row), streamed."""
    import csv

    class _Echo:
        def write(self, value):
            return value

    writer = csv.writer(_Echo())
    yield writer.writerow(["line", "outcome", "reason", "row"])
    rows = contact_import.rejections.order_by("line").values_list("line", "kind", "reason", "raw")
    for line, kind, reason, raw in rows.iterator(chunk_size=2000):
        yield writer.writerow([line, kind, reason, csv_cell(raw)])
