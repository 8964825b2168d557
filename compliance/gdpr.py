"""GDPR export, erasure and retention, assembled from every app's personal_data.py.

Each project app that stores personal data ships `personal_data.py` with:
  MODELS        the models whose personal fields its hooks cover
  export(*, workspace, email) -> {table: [row, ...]}
  erase(*, workspace, email)    ERASE_ORDER says when (lower first)
  retain(*, older_than) -> int  optional: strip personal fields of rows older than that
They are discovered by app config, never imported by name, so higher apps plug in.
"""

import csv
import io
import json
import secrets
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType

from django.apps import apps
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.downloads import workspace_file_name
from accounts.models import User, Workspace
from accounts.personal_data import audit_entries_mentioning
from accounts.request_ip import current_client_ip
from contacts.models import Contact
from contacts.services.exports import csv_cell
from contacts.suppressions import address_hash

HOOK_MODULE = "personal_data"
ERASED_VERB = "gdpr.erased"


def project_app_configs() -> list:
    """The project's own apps: those whose code lives in this repository."""
    root = Path(settings.BASE_DIR).resolve()
    found = []
    for config in apps.get_app_configs():
        path = Path(config.path).resolve()
        if root in path.parents and ".venv" not in path.parts and "site-packages" not in path.parts:
            found.append(config)
    return found


def personal_data_hooks() -> dict[str, ModuleType]:
    """{app label: its personal_data module}, for every project app that ships one."""
    hooks = {}
    for config in project_app_configs():
        name = f"{config.name}.{HOOK_MODULE}"
        if find_spec(name) is not None:
            hooks[config.label] = import_module(name)
    return hooks


def address_hint(email: str) -> str:
    """A short prefix of the address's keyed hash: names a person in logs without the address."""
    return address_hash(email)[:12]


# --- Export ------------------------------------------------------------------------------


def gdpr_collect(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    """{"<app>.<table>": rows} from every app's export hook."""
    tables: dict[str, list[dict]] = {}
    for label, hook in sorted(personal_data_hooks().items()):
        for table, rows in hook.export(workspace=workspace, email=email).items():
            tables[f"{label}.{table}"] = [dict(row) for row in rows]
    return tables


def _csv_value(value):
    if isinstance(value, dict | list):
        return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat()
    return csv_cell(value)


def _csv(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(column)) for column in columns])
    return handle.getvalue()


def gdpr_export(*, workspace: Workspace, email: str) -> str:
    """Write a ZIP of everything held about `email` in the workspace; its storage name.

    personal-data.json holds every table; one CSV per table beside it.
    """
    tables = gdpr_collect(workspace=workspace, email=email)
    document = {
        "email": email.strip(),
        "workspace": workspace.name,
        "generated_at": timezone.now(),
        "tables": tables,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "personal-data.json",
            json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
        )
        for table, rows in tables.items():
            archive.writestr(f"tables/{table}.csv", _csv(rows))
    name = workspace_file_name(
        workspace=workspace, relative=f"gdpr/{secrets.token_hex(12)}/personal-data.zip"
    )
    return default_storage.save(name, ContentFile(buffer.getvalue()))


# --- Erasure -----------------------------------------------------------------------------


@transaction.atomic
def gdpr_erase(*, workspace: Workspace, email: str, acting_user: User | None) -> None:
    """Erase the person from the workspace through every app's hook, in ERASE_ORDER.

    Hooks delete or redact the rows; contacts keeps a hashed suppression tombstone so a
    later import is refused. The audit entry names the address by a hash prefix only and
    records no client IP (the person may be the one confirming).
    """
    hooks = sorted(
        personal_data_hooks().items(), key=lambda item: getattr(item[1], "ERASE_ORDER", 500)
    )
    # Entries naming the address may also name the person: their names go too, read now,
    # while the contact still exists (the accounts hook, which runs last, knows only the
    # address).
    audit_entries_mentioning(workspace, email).redact_personal_fields(
        needles=[email.strip(), *_names(workspace, email)]
    )
    for _label, hook in hooks:
        hook.erase(workspace=workspace, email=email)
    with client_ip_withheld(acting_user is None):
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb=ERASED_VERB,
            details={"address_hint": address_hint(email), "apps": [label for label, _ in hooks]},
        )


def _names(workspace: Workspace, email: str) -> set[str]:
    names = set()
    rows = Contact.objects.for_workspace(workspace).filter(email__iexact=email.strip())
    for first, last in rows.values_list("first_name", "last_name"):
        names |= {name for name in (first, last, f"{first} {last}".strip()) if len(name) > 2}
    return names


@contextmanager
def client_ip_withheld(withheld: bool) -> Iterator[None]:
    """Audit entries written for the person themselves keep no IP of theirs."""
    if not withheld:
        yield
        return
    token = current_client_ip.set(None)
    try:
        yield
    finally:
        current_client_ip.reset(token)


# --- Retention ---------------------------------------------------------------------------


def months_before(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months earlier (clamped to the month's last day)."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    month += 1
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


def gdpr_retention_apply(*, now: datetime | None = None) -> dict[str, int]:
    """Call every app's retain hook with the cut-off of settings.RETENTION_MONTHS."""
    older_than = months_before(now or timezone.now(), settings.RETENTION_MONTHS)
    counts = {}
    for label, hook in sorted(personal_data_hooks().items()):
        retain = getattr(hook, "retain", None)
        if retain is not None:
            counts[label] = retain(older_than=older_than)
    return counts
