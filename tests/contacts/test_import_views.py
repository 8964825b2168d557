import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from contacts.models import Contact, ContactImport
from tests.factories import ContactListFactory, MembershipFactory

pytestmark = pytest.mark.django_db


def _url(name, workspace, **kwargs):
    return reverse(name, kwargs={"workspace_slug": workspace.slug, **kwargs})


def test_upload_map_import_and_download_report(
    member_client, workspace, django_capture_on_commit_callbacks
):
    editor = member_client(workspace, "editor")
    newsletter = ContactListFactory(workspace=workspace, name="Newsletter")
    csv = b"E-mail;Vorname\r\nana@example.com;Ana\r\nnope;X\r\n"
    response = editor.post(
        _url("contacts:import_upload", workspace),
        {"file": SimpleUploadedFile("shop.csv", csv, content_type="text/csv")},
    )
    contact_import = ContactImport.objects.get(workspace=workspace)
    assert response["Location"] == _url(
        "contacts:import_detail", workspace, import_id=contact_import.pk
    )
    page = editor.get(response["Location"])
    html = page.content.decode()
    assert "separated by semicolons" in html
    assert "ana@example.com" in html  # preview of the first rows
    assert '<option value="email" selected>' in html  # guessed from the header

    with django_capture_on_commit_callbacks(execute=True):
        started = editor.post(
            response["Location"],
            {
                "column_0": "email",
                "column_1": "first_name",
                "lists": [newsletter.pk],
                "update_existing": "1",
                "consent_basis": "Opted in at checkout",
                "consent_source": "Web shop",
            },
        )
    assert started.status_code == 302
    contact_import.refresh_from_db()
    assert contact_import.status == "done"  # the task ran inline (eager) after commit
    assert Contact.objects.get(workspace=workspace).first_name == "Ana"

    progress = editor.get(
        _url("contacts:import_progress", workspace, import_id=contact_import.pk),
        headers={"HX-Request": "true"},
    )
    fragment = progress.content.decode()
    assert "Import finished" in fragment
    assert "hx-trigger" not in fragment  # polling stops when done
    assert 'data-count="created">1<' in fragment

    report = editor.get(_url("contacts:import_report", workspace, import_id=contact_import.pk))
    assert report["Content-Disposition"].startswith("attachment")
    body = b"".join(report.streaming_content).decode()
    assert body.splitlines()[1].startswith("3,invalid,invalid email address")


def test_running_import_is_polled(member_client, workspace):
    client = member_client(workspace, "viewer")
    contact_import = ContactImport.objects.create(
        workspace=workspace,
        file_name="x",
        original_name="x.csv",
        encoding="utf-8",
        delimiter=",",
        status="running",
        size_bytes=1000,
        total_bytes_read=420,
    )
    fragment = client.get(
        _url("contacts:import_progress", workspace, import_id=contact_import.pk),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert 'hx-trigger="every 1s"' in fragment
    assert 'value="42"' in fragment


def test_mapping_without_email_column_shows_an_error(member_client, workspace):
    editor = member_client(workspace, "editor")
    editor.post(
        _url("contacts:import_upload", workspace),
        {"file": SimpleUploadedFile("a.csv", b"email,name\r\na@example.com,A\r\n")},
    )
    contact_import = ContactImport.objects.get(workspace=workspace)
    response = editor.post(
        _url("contacts:import_detail", workspace, import_id=contact_import.pk),
        {
            "column_0": "",
            "column_1": "first_name",
            "update_existing": "1",
            "consent_basis": "x",
            "consent_source": "y",
        },
    )
    assert response.status_code == 400
    assert "exactly one column for the email address" in response.content.decode()
    contact_import.refresh_from_db()
    assert contact_import.status == "mapping"


def test_non_csv_upload_is_refused_with_a_message(member_client, workspace):
    editor = member_client(workspace, "editor")
    response = editor.post(
        _url("contacts:import_upload", workspace),
        {"file": SimpleUploadedFile("sheet.csv", b"PK\x03\x04\x14\x00\x00\x00binary")},
    )
    assert response.status_code == 400
    assert "not a CSV file" in response.content.decode()
    assert not ContactImport.objects.exists()


def test_oversized_upload_is_refused_before_it_is_read(workspace, settings):
    """The Content-Length alone decides: the body is never parsed (nor CSRF-checked)."""
    settings.CONTACT_IMPORT_MAX_BYTES = 1000
    editor = MembershipFactory(workspace=workspace, role="editor")
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor.user)
    response = client.generic(
        "POST",
        _url("contacts:import_upload", workspace),
        b"x" * 200_000,
        content_type="multipart/form-data; boundary=nothing",
    )
    assert response.status_code == 413
    assert "larger than" in response.content.decode()


def test_upload_still_requires_csrf(workspace):
    editor = MembershipFactory(workspace=workspace, role="editor")
    client = Client(enforce_csrf_checks=True)
    client.force_login(editor.user)
    response = client.post(
        _url("contacts:import_upload", workspace),
        {"file": SimpleUploadedFile("a.csv", b"email\r\na@example.com\r\n")},
    )
    assert response.status_code == 403
    assert not ContactImport.objects.exists()


def test_viewer_cannot_start_an_import(member_client, workspace):
    viewer = member_client(workspace, "viewer")
    contact_import = ContactImport.objects.create(
        workspace=workspace,
        file_name="x",
        original_name="x.csv",
        encoding="utf-8",
        delimiter=",",
        columns=["email"],
        mapping={"0": "email"},
    )
    response = viewer.post(
        _url("contacts:import_detail", workspace, import_id=contact_import.pk),
        {"column_0": "email", "update_existing": "1", "consent_basis": "x", "consent_source": "y"},
    )
    assert response.status_code == 403
