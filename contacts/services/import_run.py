"""Running a contact import: parse and validate rows in Python, write them set-based.

Each batch of validated rows is COPYed into a temporary staging table, then one statement
upserts contacts, one adds list subscriptions and one writes the consent records that prove
them. The batch and the import's checkpoint commit together, so a re-run after a crash
continues after the last committed batch, and never holds the file in memory.
"""

import io
import json
from dataclasses import dataclass, field

from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.locks import advisory_lock_try
from contacts import csvfiles
from contacts.addresses import InvalidAddress, normalize_email
from contacts.attributes import InvalidValue, parse_attribute
from contacts.models import ContactImport, Field, ImportRejection
from contacts.suppressions import address_hashes

BATCH_ROWS = 5000


@dataclass
class _Row:
    line: int
    email: str
    first_name: str
    last_name: str
    attributes: dict


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    rejections: list[tuple[int, str, str, str]] = field(default_factory=list)
    records: int = 0
    invalid: int = 0
    skipped: int = 0


class _RowParser:
    """Turns one CSV record into a row to write, or a reason it is rejected."""

    def __init__(self, contact_import: ContactImport):
        fields = {f.key: f for f in Field.objects.for_workspace(contact_import.workspace)}
        self.columns: list[tuple[int, str, Field | None]] = []
        for index, target in contact_import.mapping.items():
            field_ = (
                fields.get(target.removeprefix("attr:")) if target.startswith("attr:") else None
            )
            if target.startswith("attr:") and field_ is None:
                continue  # the field was deleted after mapping
            self.columns.append((int(index), target, field_))
        # hash() of each address seen: 64 bits, so a million rows fit in a few dozen MB.
        self.seen: set[int] = set()

    def parse(self, line: int, cells: list[str]) -> _Row | tuple[str, str]:
        values = {"first_name": "", "last_name": "", "email": ""}
        attributes, problems = {}, []
        for index, target, field_ in self.columns:
            text = cells[index] if index < len(cells) else ""
            if field_ is None:
                values[target] = text
                continue
            try:
                value = parse_attribute(field_type=field_.type, choices=field_.choices, text=text)
            except InvalidValue as error:
                problems.append(f"{field_.label}: {error}")
                continue
            if value is not None:
                attributes[field_.key] = value
        try:
            email = normalize_email(values["email"])
        except InvalidAddress as error:
            return "invalid", f"invalid email address ({error})"
        if problems:
            return "invalid", "; ".join(problems)
        key = hash(email.lower())
        if key in self.seen:
            return "skipped", "duplicate address: already in an earlier row"
        self.seen.add(key)
        return _Row(
            line,
            email,
            values["first_name"].strip()[:150],
            values["last_name"].strip()[:150],
            attributes,
        )


def contact_import_run(*, import_id: int) -> ContactImport:
    """Import every row; resumable: a re-run after a crash continues after the last batch.

    A session-level advisory lock keeps a redelivered task from running the same import
    twice at once.
    """
    with advisory_lock_try("contacts.import", import_id) as acquired:
        if not acquired:
            return ContactImport.objects.get(pk=import_id)
        with transaction.atomic():
            contact_import = ContactImport.objects.select_for_update().get(pk=import_id)
            if contact_import.status in (ContactImport.Status.DONE, ContactImport.Status.MAPPING):
                return contact_import
            contact_import.status = ContactImport.Status.RUNNING
            contact_import.started_at = contact_import.started_at or timezone.now()
            contact_import.error = ""
            contact_import.save(update_fields=["status", "started_at", "error"])
        try:
            _run(contact_import)
        except Exception as error:
            ContactImport.objects.filter(pk=import_id).update(
                status=ContactImport.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000]
            )
            raise
    contact_import.refresh_from_db()
    if contact_import.status == ContactImport.Status.DONE:
        # The upload has served its purpose; keeping people's data in it serves none.
        default_storage.delete(contact_import.file_name)
        if contact_import.created_count >= ANALYZE_AFTER_ROWS:
            _statistics_refresh()
    audit_record(
        workspace=contact_import.workspace,
        actor=contact_import.created_by,
        verb="contacts.imported",
        target=contact_import,
        details={
            "created": contact_import.created_count,
            "updated": contact_import.updated_count,
            "skipped": contact_import.skipped_count,
            "invalid": contact_import.invalid_count,
        },
    )
    return contact_import


# After a large import the planner's statistics are stale until autovacuum catches up
# (on a fresh install they say "one row"), and the campaign audience query picks a nested
# loop that turns a 1 s snapshot into minutes. Refreshing them costs a sampled scan.
ANALYZE_AFTER_ROWS = 1000


def _statistics_refresh() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_contact, contacts_subscription")


def _run(contact_import: ContactImport) -> None:
    parser = _RowParser(contact_import)
    list_ids = list(contact_import.lists.values_list("pk", flat=True))
    already_done = contact_import.rows_processed  # records committed by an earlier run
    with default_storage.open(contact_import.file_name, "rb") as raw:
        counted = csvfiles.CountingReader(raw)
        stream = io.BufferedReader(counted, buffer_size=csvfiles.CHUNK_BYTES)
        records = csvfiles.records(
            stream, encoding=contact_import.encoding, delimiter=contact_import.delimiter
        )
        batch, consumed = _Batch(), 0
        for number, (line, cells) in enumerate(records):
            if number == 0 and contact_import.has_header:
                continue
            if not any(cell.strip() for cell in cells):
                continue  # blank lines are not rows
            consumed += 1
            outcome = parser.parse(line, cells)
            if consumed <= already_done:
                continue  # written by the run that crashed; parsed again for duplicates
            batch.records += 1
            if isinstance(outcome, _Row):
                batch.rows.append(outcome)
            else:
                kind, reason = outcome
                batch.rejections.append((line, kind, reason, _raw_text(cells)))
                if kind == "invalid":
                    batch.invalid += 1
                else:
                    batch.skipped += 1
            if batch.records >= BATCH_ROWS:
                _write_batch(contact_import, batch, list_ids, bytes_read=counted.bytes_read)
                batch = _Batch()
        _write_batch(contact_import, batch, list_ids, bytes_read=counted.bytes_read, last=True)


def _raw_text(cells: list[str]) -> str:
    return ",".join(cells)[:2000]


_STAGE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS contacts_import_stage (
    line integer NOT NULL,
    email text NOT NULL,
    first_name text NOT NULL,
    last_name text NOT NULL,
    attributes jsonb NOT NULL,
    hashes text[] NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS contacts_import_written (
    id bigint NOT NULL,
    inserted boolean NOT NULL
) ON COMMIT DELETE ROWS;
"""

_SUPPRESSED_SQL = """
DELETE FROM contacts_import_stage s
USING (
    SELECT DISTINCT s2.line
    FROM contacts_import_stage s2
    JOIN contacts_suppression x
      ON x.address_hash = ANY (s2.hashes)
     AND (x.workspace_id = %(workspace)s OR x.workspace_id IS NULL)
) AS suppressed
WHERE s.line = suppressed.line
RETURNING s.line, s.email
"""

_UPSERT_SQL = """
WITH written AS (
    INSERT INTO contacts_contact AS c (
        workspace_id, email, first_name, last_name, attributes, status, created_at, updated_at
    )
    SELECT %(workspace)s, email, first_name, last_name, attributes, 'active', %(now)s, %(now)s
    FROM contacts_import_stage
    ORDER BY line
    ON CONFLICT (workspace_id, lower(email)) {conflict}
    RETURNING c.id, (c.xmax = 0) AS inserted
)
INSERT INTO contacts_import_written (id, inserted) SELECT id, inserted FROM written
"""

_UPDATE_EXISTING = """DO UPDATE SET
        first_name = COALESCE(NULLIF(EXCLUDED.first_name, ''), c.first_name),
        last_name = COALESCE(NULLIF(EXCLUDED.last_name, ''), c.last_name),
        attributes = c.attributes || EXCLUDED.attributes,
        updated_at = EXCLUDED.updated_at"""

# Only contacts that may receive mail join lists; an existing unsubscribed subscription
# stays unsubscribed (ON CONFLICT DO NOTHING): an import never re-subscribes anyone.
_SUBSCRIBE_SQL = """
WITH subscribed AS (
    INSERT INTO contacts_subscription (
        workspace_id, contact_id, contact_list_id, status, created_at, subscribed_at
    )
    SELECT %(workspace)s, c.id, l.id, 'subscribed', %(now)s, %(now)s
    FROM contacts_import_written w
    JOIN contacts_contact c ON c.id = w.id AND c.status = 'active'
    CROSS JOIN unnest(%(lists)s::bigint[]) AS l(id)
    ON CONFLICT (contact_id, contact_list_id) DO NOTHING
    RETURNING contact_id, contact_list_id
)
INSERT INTO contacts_consentrecord (
    workspace_id, contact_id, contact_list_id, purpose, action, method, source,
    campaign_name, email, user_agent, consent_text, actor_id, created_at
)
SELECT %(workspace)s, s.contact_id, s.contact_list_id, '', 'granted', 'import', %(source)s,
       '', c.email, '', %(basis)s, %(actor)s, %(now)s
FROM subscribed s JOIN contacts_contact c ON c.id = s.contact_id
"""

_CONSENT_WITHOUT_LISTS_SQL = """
INSERT INTO contacts_consentrecord (
    workspace_id, contact_id, contact_list_id, purpose, action, method, source,
    campaign_name, email, user_agent, consent_text, actor_id, created_at
)
SELECT %(workspace)s, c.id, NULL, 'email marketing', 'granted', 'import', %(source)s,
       '', c.email, '', %(basis)s, %(actor)s, %(now)s
FROM contacts_import_written w JOIN contacts_contact c ON c.id = w.id
"""


def _write_batch(
    contact_import: ContactImport,
    batch: _Batch,
    list_ids: list[int],
    *,
    bytes_read: int,
    last: bool = False,
) -> None:
    """Write one batch and its checkpoint in one transaction: a crash loses no half batch."""
    now = timezone.now()
    params = {
        "workspace": contact_import.workspace_id,
        "now": now,
        "lists": list_ids,
        "source": f"{contact_import.consent_source} (import of {contact_import.original_name})"[
            :500
        ],
        "basis": contact_import.consent_basis,
        "actor": contact_import.created_by_id,
    }
    created = updated = existing_skipped = 0
    rejections = list(batch.rejections)
    with transaction.atomic(), connection.cursor() as cursor:
        if batch.rows:
            cursor.execute(_STAGE_SQL)
            # Emptied at commit anyway; also emptied here for callers already in a transaction.
            cursor.execute("TRUNCATE contacts_import_stage, contacts_import_written")
            with cursor.cursor.copy(
                "COPY contacts_import_stage"
                " (line, email, first_name, last_name, attributes, hashes) FROM STDIN"
            ) as copy:
                for row in batch.rows:
                    copy.write_row(
                        (
                            row.line,
                            row.email,
                            row.first_name,
                            row.last_name,
                            json.dumps(row.attributes),
                            address_hashes(row.email),
                        )
                    )
            cursor.execute(_SUPPRESSED_SQL, params)
            suppressed = cursor.fetchall()
            rejections += [
                # The address is not kept: it may be an erased person's tombstone.
                (line, "skipped", "suppressed address: never imported again", "")
                for line, email in suppressed
            ]
            conflict = _UPDATE_EXISTING if contact_import.update_existing else "DO NOTHING"
            cursor.execute(_UPSERT_SQL.format(conflict=conflict), params)
            cursor.execute(
                "SELECT count(*) FILTER (WHERE inserted), count(*) FROM contacts_import_written"
            )
            created, written = cursor.fetchone()
            updated = written - created
            staged = len(batch.rows) - len(suppressed)
            if not contact_import.update_existing and written < staged:
                existing_skipped = staged - written
                cursor.execute(
                    """
                    SELECT s.line, s.email FROM contacts_import_stage s
                    JOIN contacts_contact c
                      ON c.workspace_id = %(workspace)s AND lower(c.email) = lower(s.email)
                    LEFT JOIN contacts_import_written w ON w.id = c.id
                    WHERE w.id IS NULL
                    """,
                    params,
                )
                rejections += [
                    (line, "skipped", "already a contact (the import skips existing ones)", email)
                    for line, email in cursor.fetchall()
                ]
            if list_ids:
                cursor.execute(_SUBSCRIBE_SQL, params)
            else:
                cursor.execute(_CONSENT_WITHOUT_LISTS_SQL, params)
            batch.skipped += len(suppressed) + existing_skipped
        if rejections:
            ImportRejection.objects.bulk_create(
                ImportRejection(
                    workspace_id=contact_import.workspace_id,
                    contact_import_id=contact_import.pk,
                    line=line,
                    kind=kind,
                    reason=reason[:300],
                    raw=raw,
                )
                for line, kind, reason, raw in rejections
            )
        contact_import.rows_processed += batch.records
        contact_import.created_count += created
        contact_import.updated_count += updated
        contact_import.skipped_count += batch.skipped
        contact_import.invalid_count += batch.invalid
        contact_import.total_bytes_read = bytes_read
        fields = [
            "rows_processed",
            "created_count",
            "updated_count",
            "skipped_count",
            "invalid_count",
            "total_bytes_read",
        ]
        if last:
            contact_import.status = ContactImport.Status.DONE
            contact_import.finished_at = timezone.now()
            fields += ["status", "finished_at"]
        contact_import.save(update_fields=fields)
