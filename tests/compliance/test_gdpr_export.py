"""Export: a ZIP of JSON + one CSV per table, every hook's rows for the person only."""

import csv
import io
import json
import zipfile

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.urls import reverse

from accounts.models import AuditEntry, Role
from compliance.gdpr import gdpr_export, personal_data_hooks
from compliance.models import GdprRequest
from compliance.tokens import preferences_token
from tests.compliance.gdpr_helpers import PERSON, make_person
from tests.factories import InvitationFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

OTHER = "olive.other@example.net"


def _archive(data: bytes) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(data))


def test_export_zip_holds_every_table_of_this_person_and_nobody_elses():
    workspace = WorkspaceFactory()
    make_person(workspace)
    make_person(workspace, email=OTHER, first="Olive", last="Otherly", ip="198.51.100.4")
    make_person(WorkspaceFactory())  # the same address in another workspace
    InvitationFactory(workspace=workspace, email=PERSON["email"].lower())
    name = gdpr_export(workspace=workspace, email=PERSON["email"])
    assert name.startswith(f"workspaces/{workspace.pk}/gdpr/")
    with default_storage.open(name) as handle:
        archive = _archive(handle.read())
    document = json.loads(archive.read("personal-data.json"))
    tables = document["tables"]
    # Every discovered hook contributes its tables, each also as a CSV.
    for label in personal_data_hooks():
        assert any(table.startswith(f"{label}.") for table in tables), label
    for table in tables:
        assert f"tables/{table}.csv" in archive.namelist()
    assert [row["email"] for row in tables["contacts.contacts"]] == [PERSON["email"]]
    assert len(tables["contacts.subscriptions"]) == 1
    [consent] = tables["contacts.consent_records"]
    assert consent["ip"] == PERSON["ip"]
    assert len(tables["accounts.invitations"]) == 1
    everything = b"".join(archive.read(member) for member in archive.namelist()).decode()
    assert "olive" not in everything.lower()
    assert "198.51.100.4" not in everything
    rows = list(csv.DictReader(io.StringIO(archive.read("tables/contacts.contacts.csv").decode())))
    assert rows[0]["first_name"] == PERSON["first_name"]


def test_marketer_requests_an_export_and_downloads_it_audited(
    member_client, django_capture_on_commit_callbacks
):
    workspace = WorkspaceFactory()
    make_person(workspace)
    admin = member_client(workspace, Role.ADMIN)
    page = reverse("compliance_ws:gdpr_requests", kwargs={"workspace_slug": workspace.slug})
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("compliance_ws:gdpr_request_create", kwargs={"workspace_slug": workspace.slug}),
            {"email": PERSON["email"], "kind": "export"},
        )
    assert response.status_code == 302
    request = GdprRequest.objects.get(workspace=workspace)
    assert (request.status, request.requester, request.requested_by) == (
        "done",
        "marketer",
        admin.user,
    )
    listing = admin.get(page)
    assert b"Download ZIP" in listing.content
    download = admin.get(
        reverse(
            "compliance_ws:gdpr_download",
            kwargs={"workspace_slug": workspace.slug, "request_id": request.pk},
        )
    )
    assert download.status_code == 200
    archive = _archive(b"".join(download.streaming_content))
    assert "personal-data.json" in archive.namelist()
    verbs = set(AuditEntry.objects.filter(workspace=workspace).values_list("verb", flat=True))
    assert {"gdpr.export_requested", "gdpr.exported"} <= verbs
    assert not AuditEntry.objects.filter(details__icontains="erin").exists()


def test_editor_cannot_request_exports(member_client):
    workspace = WorkspaceFactory()
    editor = member_client(workspace, Role.EDITOR)
    url = reverse("compliance_ws:gdpr_request_create", kwargs={"workspace_slug": workspace.slug})
    assert editor.post(url, {"email": PERSON["email"], "kind": "export"}).status_code == 403
    assert not GdprRequest.objects.exists()


def test_erasure_by_marketer_needs_the_tick(member_client):
    workspace = WorkspaceFactory()
    admin = member_client(workspace, Role.ADMIN)
    url = reverse("compliance_ws:gdpr_request_create", kwargs={"workspace_slug": workspace.slug})
    response = admin.post(url, {"email": PERSON["email"], "kind": "erasure"})
    assert response.status_code == 400
    assert not GdprRequest.objects.exists()


def test_person_gets_a_signed_expiring_link_by_mail(
    client, django_capture_on_commit_callbacks, settings
):
    workspace = WorkspaceFactory()
    contact = make_person(workspace)
    make_person(workspace, email=OTHER, first="Olive", last="Otherly")
    token = preferences_token(workspace_id=workspace.pk, contact_id=contact.pk)
    url = reverse("compliance:gdpr_request", kwargs={"token": token})
    assert b"Email me my data" in client.get(url).content
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"kind": "export"}).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"kind": "export"})  # a second click makes no second mail
    [message] = mail.outbox
    assert message.to == [PERSON["email"]]
    link = next(line for line in message.body.splitlines() if "/files/" in line)
    path = link[link.index("/files/") :].strip()
    download = client.get(path)
    assert download.status_code == 200
    archive = _archive(b"".join(download.streaming_content))
    document = json.loads(archive.read("personal-data.json"))
    assert [r["email"] for r in document["tables"]["contacts.contacts"]] == [PERSON["email"]]
    assert "olive" not in json.dumps(document).lower()
    settings.DOWNLOAD_LINK_MAX_AGE_SECONDS = -1  # expired
    assert client.get(path).status_code == 404
