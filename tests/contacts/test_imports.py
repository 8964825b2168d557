"""CSV imports against real PostgreSQL: encodings, delimiters, edge cases, counts, report."""

import codecs

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.errors import ApplicationError
from contacts.models import ConsentRecord, Contact, ContactImport, Subscription, Suppression
from contacts.services.import_run import contact_import_run
from contacts.services.imports import (
    contact_import_report_csv,
    contact_import_resume,
    contact_import_start,
    contact_import_upload,
)
from contacts.services.suppressions import suppression_add
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    FieldFactory,
    MembershipFactory,
    SubscriptionFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return MembershipFactory(role="owner")


def _upload(owner, content: bytes, name: str = "contacts.csv") -> ContactImport:
    return contact_import_upload(
        workspace=owner.workspace,
        upload=SimpleUploadedFile(name, content, content_type="text/csv"),
        acting_user=owner.user,
    )


def _import(owner, content: bytes, *, lists=(), update_existing=True, mapping=None):
    contact_import = _upload(owner, content)
    contact_import_start(
        contact_import=contact_import,
        mapping=mapping or contact_import.mapping,
        list_ids=[contact_list.pk for contact_list in lists],
        update_existing=update_existing,
        consent_basis="Signed up at our shop counter",
        consent_source="Paper forms, spring fair",
        acting_user=owner.user,
    )
    return contact_import_run(import_id=contact_import.pk)


def _report(contact_import) -> list[str]:
    return list(contact_import_report_csv(contact_import=contact_import))[1:]


def _counts(contact_import) -> tuple[int, int, int, int]:
    return (
        contact_import.created_count,
        contact_import.updated_count,
        contact_import.skipped_count,
        contact_import.invalid_count,
    )


ROWS = "email,first name,last name\r\nada@example.com,Ada,Lovelace\r\nbob@example.org,Bob,Byte\r\n"


def test_import_creates_contacts_subscriptions_and_consent(owner):
    newsletter = ContactListFactory(workspace=owner.workspace)
    result = _import(owner, ROWS.encode(), lists=[newsletter])
    assert result.status == ContactImport.Status.DONE
    assert _counts(result) == (2, 0, 0, 0)
    ada = Contact.objects.get(workspace=owner.workspace, email="ada@example.com")
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")
    assert Subscription.objects.get(contact=ada, contact_list=newsletter).status == "subscribed"
    consent = ConsentRecord.objects.get(contact=ada)
    assert (consent.action, consent.method, consent.contact_list) == (
        "granted",
        "import",
        newsletter,
    )
    assert consent.consent_text == "Signed up at our shop counter"
    assert "Paper forms, spring fair" in consent.source
    assert "contacts.csv" in consent.source
    assert consent.actor == owner.user


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16", b""),  # Python's utf-16 codec writes a BOM
        ("utf-16-le", b""),  # no BOM
        ("cp1252", b""),
        ("latin-1", b""),
    ],
)
def test_encodings_are_detected(owner, encoding, prefix):
    text = (
        "email;Vorname;Nachname\r\n"
        "zoë@example.com;Zoë;Müller\r\nfrancois@example.fr;François;Ça\r\n"
    )
    content = prefix + text.encode(encoding)
    result = _import(owner, content)
    assert _counts(result) == (2, 0, 0, 0)
    zoe = Contact.objects.get(workspace=owner.workspace, email="zoë@example.com")
    assert (zoe.first_name, zoe.last_name) == ("Zoë", "Müller")
    assert Contact.objects.get(email="francois@example.fr").first_name == "François"


def test_latin1_only_bytes_fall_back_from_cp1252(owner):
    # 0x81 is undefined in Windows-1252: such a file can only be Latin-1.
    content = b"email,first name\r\na@example.com,X\x81Y\r\n"
    contact_import = _upload(owner, content)
    assert contact_import.encoding == "latin-1"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(owner, delimiter):
    content = ROWS.replace(",", delimiter).encode()
    contact_import = _upload(owner, content)
    assert contact_import.delimiter == delimiter
    assert contact_import.columns == ["email", "first name", "last name"]
    assert contact_import.mapping == {"0": "email", "1": "first_name", "2": "last_name"}


def test_quoted_newlines_empty_lines_and_line_numbers(owner):
    content = (
        b"email,first name,notes\r\n"
        b'"multi@example.com","Multi\r\nLine",x\r\n'
        b"\r\n"
        b",,\r\n"
        b"not-an-address,Bad,y\r\n"
    )
    result = _import(owner, content)
    assert _counts(result) == (1, 0, 0, 1)
    assert Contact.objects.get(email="multi@example.com").first_name == "Multi\r\nLine"
    [line] = _report(result)
    assert line.startswith("6,invalid,invalid email address")


def test_duplicate_rows_are_skipped_and_reported(owner):
    content = b"email\r\na@example.com\r\nb@example.com\r\nA@EXAMPLE.com\r\n"
    result = _import(owner, content)
    assert _counts(result) == (2, 0, 1, 0)
    [line] = _report(result)
    assert line.startswith("4,skipped,duplicate address")


def test_invalid_and_idn_addresses(owner):
    content = (
        "email\r\nok@bücher.example\r\nno-at-sign.example\r\nspace in@example.com\r\n"
        "trailing@dot.\r\n@nolocal.example\r\nUPPER@Example.COM\r\n"
    ).encode()
    result = _import(owner, content)
    assert _counts(result) == (2, 0, 0, 4)
    emails = set(Contact.objects.filter(workspace=owner.workspace).values_list("email", flat=True))
    # IDN domain stored IDNA-encoded; local part kept as typed, domain lower-cased.
    assert emails == {"ok@xn--bcher-kva.example", "UPPER@example.com"}
    reasons = _report(result)
    assert [r.split(",")[0] for r in reasons] == ["3", "4", "5", "6"]


def test_two_hundred_columns(owner):
    header = ",".join(["email"] + [f"col{n}" for n in range(199)])
    row = ",".join(["wide@example.com"] + [str(n) for n in range(199)])
    result = _import(owner, f"{header}\r\n{row}\r\n".encode())
    assert _counts(result) == (1, 0, 0, 0)
    assert len(result.columns) == 200


def test_empty_file_is_refused(owner):
    with pytest.raises(ApplicationError, match="empty"):
        _upload(owner, b"")


def test_binary_file_is_refused(owner):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 10
    with pytest.raises(ApplicationError, match="not a CSV"):
        _upload(owner, png, name="photo.csv")
    assert not ContactImport.objects.exists()


def test_oversized_upload_is_refused(owner, settings):
    settings.CONTACT_IMPORT_MAX_BYTES = 10
    with pytest.raises(ApplicationError, match="larger than"):
        _upload(owner, ROWS.encode())


def test_suppressed_and_unsubscribed_are_never_resubscribed(owner):
    workspace = owner.workspace
    newsletter = ContactListFactory(workspace=workspace)
    suppression_add(
        workspace=workspace, email="gone@example.com", reason="manual", acting_user=None
    )
    suppression_add(workspace=None, email="abuse@example.net", reason="manual", acting_user=None)
    bounced = ContactFactory(workspace=workspace, email="bounced@example.com", status="bounced")
    left = SubscriptionFactory(
        contact__workspace=workspace,
        contact__email="left@example.com",
        contact_list=newsletter,
        status="unsubscribed",
    )
    content = (
        b"email\r\nGone@Example.com\r\nabuse@example.net\r\nbounced@example.com\r\n"
        b"left@example.com\r\nfresh@example.com\r\n"
    )
    result = _import(owner, content, lists=[newsletter])
    assert result.created_count == 1
    assert result.skipped_count == 2  # the two suppressed addresses
    assert not Contact.objects.filter(email__iexact="gone@example.com").exists()
    assert not Subscription.objects.filter(contact=bounced).exists()
    left.refresh_from_db()
    assert left.status == "unsubscribed"
    reasons = "\n".join(_report(result))
    assert "suppressed address" in reasons
    subscribed = Subscription.objects.filter(contact_list=newsletter, status="subscribed")
    assert list(subscribed.values_list("contact__email", flat=True)) == ["fresh@example.com"]


def test_update_existing_or_skip(owner):
    ContactFactory(workspace=owner.workspace, email="ada@example.com", first_name="Old")
    updated = _import(owner, ROWS.encode(), update_existing=True)
    assert _counts(updated) == (1, 1, 0, 0)
    assert Contact.objects.get(email="ada@example.com").first_name == "Ada"

    ContactFactory(workspace=owner.workspace, email="carol@example.com", first_name="Keep")
    skipped = _import(
        owner,
        b"email,first name\r\ncarol@example.com,Changed\r\ndan@example.com,Dan\r\n",
        update_existing=False,
    )
    assert _counts(skipped) == (1, 0, 1, 0)
    assert Contact.objects.get(email="carol@example.com").first_name == "Keep"
    assert "already a contact" in _report(skipped)[0]


def test_typed_attributes_are_stored_typed_and_bad_values_reported(owner):
    FieldFactory(workspace=owner.workspace, key="age", label="Age", type="number")
    FieldFactory(workspace=owner.workspace, key="joined", label="Joined", type="date")
    FieldFactory(workspace=owner.workspace, key="vip", label="VIP", type="boolean")
    content = (
        b"email,age,joined,vip\r\n"
        b"a@example.com,9,31/12/2023,yes\r\n"
        b"b@example.com,ten,2024-01-02,no\r\n"
    )
    result = _import(owner, content)
    assert _counts(result) == (1, 0, 0, 1)
    assert Contact.objects.get(email="a@example.com").attributes == {
        "age": 9,
        "joined": "2023-12-31",
        "vip": True,
    }
    assert "Age: 'ten' is not a number" in _report(result)[0]


def test_mapping_requires_one_email_column_and_consent(owner):
    contact_import = _upload(owner, ROWS.encode())
    with pytest.raises(ApplicationError, match="email"):
        contact_import_start(
            contact_import=contact_import,
            mapping={"1": "first_name"},
            list_ids=[],
            update_existing=True,
            consent_basis="x",
            consent_source="y",
            acting_user=owner.user,
        )
    with pytest.raises(ApplicationError, match="consent"):
        contact_import_start(
            contact_import=contact_import,
            mapping={"0": "email"},
            list_ids=[],
            update_existing=True,
            consent_basis="",
            consent_source="",
            acting_user=owner.user,
        )


def test_lists_of_another_workspace_are_refused(owner):
    foreign = ContactListFactory()
    contact_import = _upload(owner, ROWS.encode())
    with pytest.raises(ApplicationError, match="lists of this workspace"):
        contact_import_start(
            contact_import=contact_import,
            mapping={"0": "email"},
            list_ids=[foreign.pk],
            update_existing=True,
            consent_basis="x",
            consent_source="y",
            acting_user=owner.user,
        )


def test_formula_cells_are_neutralised_in_the_report(owner):
    result = _import(owner, b"email,first name\r\n=HYPERLINK(1),x\r\n")
    assert "'=HYPERLINK(1)" in _report(result)[0]


def test_rerun_after_a_crash_continues_without_duplicating(owner, monkeypatch):
    from contacts.services import import_run

    monkeypatch.setattr(import_run, "BATCH_ROWS", 2)
    rows = "".join(f"p{n}@example.com\r\n" for n in range(7))
    contact_import = _upload(owner, f"email\r\n{rows}".encode())
    contact_import_start(
        contact_import=contact_import,
        mapping={"0": "email"},
        list_ids=[],
        update_existing=True,
        consent_basis="x",
        consent_source="y",
        acting_user=owner.user,
    )
    calls = {"n": 0}
    real_write = import_run._write_batch

    def crash_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("worker died")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(import_run, "_write_batch", crash_on_third_batch)
    with pytest.raises(ConnectionError):
        contact_import_run(import_id=contact_import.pk)
    assert Contact.objects.filter(workspace=owner.workspace).count() == 4
    contact_import.refresh_from_db()
    assert contact_import.status == "failed"
    assert "worker died" in contact_import.error
    monkeypatch.setattr(import_run, "_write_batch", real_write)
    contact_import_resume(contact_import=contact_import, acting_user=owner.user)
    result = contact_import_run(import_id=contact_import.pk)
    assert _counts(result) == (7, 0, 0, 0)
    assert ConsentRecord.objects.filter(workspace=owner.workspace).count() == 7
    assert Suppression.objects.count() == 0


def test_an_import_already_running_elsewhere_is_not_run_twice(owner):
    """A redelivered task finds the advisory lock held by the first worker and returns."""
    import psycopg
    from django.db import connection

    contact_import = _upload(owner, ROWS.encode())
    contact_import_start(
        contact_import=contact_import,
        mapping={"0": "email"},
        list_ids=[],
        update_existing=True,
        consent_basis="x",
        consent_source="y",
        acting_user=owner.user,
    )
    params = connection.get_connection_params()
    other = psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname=params["dbname"],
        autocommit=True,
    )
    try:
        other.execute(
            "SELECT pg_advisory_lock(hashtext(%s), %s)", ["contacts.import", contact_import.pk]
        )
        result = contact_import_run(import_id=contact_import.pk)
        assert result.status == "queued"
        assert not Contact.objects.filter(workspace=owner.workspace).exists()
        # Released explicitly: a closed connection's locks go only when its backend exits.
        other.execute(
            "SELECT pg_advisory_unlock(hashtext(%s), %s)", ["contacts.import", contact_import.pk]
        )
    finally:
        other.close()
    assert contact_import_run(import_id=contact_import.pk).status == "done"


def test_suppression_survives_a_hash_key_rotation(owner, settings):
    """Entries hashed with the previous key keep matching when a new key comes first."""
    settings.SUPPRESSION_HASH_KEYS = ["old-key"]
    suppression_add(
        workspace=owner.workspace, email="kept.out@example.com", reason="manual", acting_user=None
    )
    settings.SUPPRESSION_HASH_KEYS = ["new-key", "old-key"]
    result = _import(owner, b"email\r\nkept.out@example.com\r\nwelcome@example.com\r\n")
    assert (result.created_count, result.skipped_count) == (1, 1)
    assert not Contact.objects.filter(email="kept.out@example.com").exists()


def test_finished_import_keeps_no_copy_of_the_file(owner):
    from django.core.files.storage import default_storage

    result = _import(owner, ROWS.encode())
    assert not default_storage.exists(result.file_name)
    # A redelivered task finds the import done and does not need the file.
    assert contact_import_run(import_id=result.pk).status == "done"


def test_suppressed_rows_are_reported_without_their_address(owner):
    suppression_add(
        workspace=owner.workspace, email="erased@example.com", reason="manual", acting_user=None
    )
    result = _import(owner, b"email\r\nerased@example.com\r\n")
    [line] = _report(result)
    assert "suppressed address" in line
    assert "erased@example.com" not in line


def test_erasure_clears_import_previews_holding_the_address(owner):
    from contacts import personal_data

    contact_import = _upload(owner, ROWS.encode())
    assert "ada@example.com" in str(contact_import.preview)
    personal_data.erase(workspace=owner.workspace, email="ada@example.com")
    contact_import.refresh_from_db()
    assert "ada@example.com" not in str(contact_import.preview)


def test_an_import_is_audited_from_upload_to_counts(owner):
    from accounts.models import AuditEntry

    result = _import(owner, ROWS.encode() + b"broken\r\n")
    entries = AuditEntry.objects.filter(workspace=owner.workspace, target_id=str(result.pk))
    verbs = set(entries.values_list("verb", flat=True))
    assert verbs == {"contacts.import_uploaded", "contacts.import_started", "contacts.imported"}
    finished = entries.get(verb="contacts.imported")
    assert finished.details == {"created": 2, "updated": 0, "skipped": 0, "invalid": 1}
    assert finished.actor == owner.user
