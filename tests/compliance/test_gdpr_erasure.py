"""Erasure: every app's hook runs, and afterwards no row anywhere holds the person."""

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from compliance.gdpr import address_hint, gdpr_erase
from compliance.models import GdprRequest
from compliance.tokens import preferences_token
from contacts.models import Contact, ContactImport, ImportRejection, Suppression
from contacts.services.contacts import contact_create
from contacts.suppressions import may_send_to
from tests.compliance.gdpr_helpers import PERSON, make_person
from tests.factories import InvitationFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

SEARCHED_TYPES = ("text", "character varying", "character", "json", "jsonb", "inet", "cidr")


def rows_holding(needle: str) -> list[tuple[str, str, int]]:
    """(table, column, rows) for every text, JSON or address column of every table whose
    values contain `needle`, case-insensitively: the whole database, not a list of models."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = ANY(%s)",
            [list(SEARCHED_TYPES)],
        )
        columns = cursor.fetchall()
        found = []
        for table, column in columns:
            cursor.execute(
                f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE %s',
                [f"%{needle}%"],
            )
            count = cursor.fetchone()[0]
            if count:
                found.append((table, column, count))
    return found


def _everywhere(workspace, owner):
    """The person in every table that can hold them: contact, subscription, consent with IP
    and browser, audit entries naming them, an invitation, a rejected import row."""
    contact = make_person(workspace)
    audit_record(
        workspace=workspace,
        actor=owner,
        verb="suppression.added",
        target=contact,
        details={"email": PERSON["email"], "note": f"{PERSON['first_name']} asked"},
        ip=PERSON["ip"],
    )
    InvitationFactory(workspace=workspace, email=PERSON["email"].lower())
    contact_import = ContactImport.objects.create(
        workspace=workspace,
        file_name="workspaces/x/imports/a.csv",
        original_name="a.csv",
        encoding="utf-8",
        delimiter=",",
        columns=["email"],
    )
    ImportRejection.objects.create(
        workspace=workspace,
        contact_import=contact_import,
        line=3,
        kind="skipped",
        reason="duplicate address",
        raw=f"{PERSON['email']},{PERSON['first_name']}",
    )
    return contact


def test_erasure_leaves_no_row_holding_the_address_name_or_ip(
    member_client, django_capture_on_commit_callbacks
):
    workspace = WorkspaceFactory()
    owner_client = member_client(workspace, Role.OWNER)
    _everywhere(workspace, owner_client.user)
    bystander = make_person(
        workspace, email="bystander@example.net", first="Bysta", last="Nder", ip="198.51.100.9"
    )
    before = {needle: rows_holding(needle) for needle in PERSON.values()}
    assert all(before.values()), before  # the search does see the person before erasure

    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(
            reverse("compliance_ws:gdpr_request_create", kwargs={"workspace_slug": workspace.slug}),
            {"email": PERSON["email"], "kind": "erasure", "confirm_erasure": "on"},
        )
    assert response.status_code == 302

    for needle in PERSON.values():
        assert rows_holding(needle) == [], needle
    # The bystander is untouched; the tombstone and aggregate proof stay.
    assert Contact.objects.filter(pk=bystander.pk).exists()
    assert rows_holding("bystander@example.net")
    tombstone = Suppression.objects.get(workspace=workspace, reason="erased")
    assert tombstone.email == ""
    request = GdprRequest.objects.get(workspace=workspace)
    assert (request.status, request.email) == ("done", "")
    erased = AuditEntry.objects.get(workspace=workspace, verb="gdpr.erased")
    assert erased.details["address_hint"] == address_hint(PERSON["email"])
    assert AuditEntry.objects.filter(workspace=workspace, verb="suppression.added").exists()


def test_reimport_of_an_erased_address_is_refused_as_suppressed():
    workspace = WorkspaceFactory()
    make_person(workspace)
    gdpr_erase(workspace=workspace, email=PERSON["email"], acting_user=None)
    with pytest.raises(ApplicationError, match="suppression"):
        contact_create(workspace=workspace, email=PERSON["email"].upper(), acting_user=None)
    assert not may_send_to(workspace=workspace, address=PERSON["email"])


def test_erasure_redacts_audit_entries_but_keeps_them():
    workspace = WorkspaceFactory()
    contact = contact_create(workspace=workspace, email=PERSON["email"], acting_user=None)
    created = AuditEntry.objects.get(workspace=workspace, verb="contact.created")
    assert PERSON["email"].lower() in created.target_label.lower()
    other = audit_record(workspace=workspace, actor=None, verb="list.created", ip="192.0.2.1")
    gdpr_erase(workspace=workspace, email=PERSON["email"], acting_user=None)
    created.refresh_from_db()
    assert (created.target_label, created.ip, created.verb) == ("[erased]", None, "contact.created")
    assert created.target_id == str(contact.pk)
    other.refresh_from_db()
    assert other.ip == "192.0.2.1"  # entries not about the person keep their IP
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=created.pk).update(verb="x")


def test_erasure_of_one_workspace_leaves_the_other_alone():
    workspace, other = WorkspaceFactory(), WorkspaceFactory()
    make_person(workspace)
    make_person(other)
    gdpr_erase(workspace=workspace, email=PERSON["email"], acting_user=None)
    assert Contact.objects.filter(workspace=other, email__iexact=PERSON["email"]).exists()


def test_person_asks_for_erasure_and_confirms_from_the_mailed_link(
    client, django_capture_on_commit_callbacks
):
    workspace = WorkspaceFactory()
    contact = make_person(workspace)
    url = reverse(
        "compliance:gdpr_request",
        kwargs={"token": preferences_token(workspace_id=workspace.pk, contact_id=contact.pk)},
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"kind": "erasure"}).status_code == 200
    assert Contact.objects.filter(pk=contact.pk).exists()  # nothing before confirmation
    [message] = mail.outbox
    assert message.to == [PERSON["email"]]
    confirm_path = (
        next(line for line in message.body.splitlines() if "/p/data/confirm/" in line)
        .split("testserver")[-1]
        .split("://")[-1]
    )
    confirm_path = confirm_path[confirm_path.index("/p/data/confirm/") :]
    # A link scanner's GET erases nothing.
    assert client.get(confirm_path).status_code == 200
    assert Contact.objects.filter(pk=contact.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(confirm_path, REMOTE_ADDR=PERSON["ip"])
    assert response.status_code == 200
    assert not Contact.objects.filter(pk=contact.pk).exists()
    assert rows_holding(PERSON["email"]) == []
    assert rows_holding(PERSON["ip"]) == []


@pytest.mark.parametrize("token", ["garbage", "1.2.3:abc:def", "x" * 300])
def test_forged_confirmation_links_are_404(client, token):
    workspace = WorkspaceFactory()
    make_person(workspace)
    response = client.post(reverse("compliance:gdpr_erasure_confirm", kwargs={"token": token}))
    assert response.status_code == 404
    assert Contact.objects.count() == 1


def test_forged_preference_token_on_the_data_page_is_404(client):
    response = client.post(
        reverse("compliance:gdpr_request", kwargs={"token": "forged:token"}), {"kind": "erasure"}
    )
    assert response.status_code == 404
    assert not GdprRequest.objects.exists()
