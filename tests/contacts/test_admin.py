"""Operators in the admin: contacts, lists, fields, the platform-wide suppression list,
and consent records that nobody can add, change or delete."""

import pytest
from django.urls import reverse

from accounts.models import AuditEntry
from contacts.models import ConsentRecord, Suppression
from contacts.suppressions import address_hash, may_send_to
from tests.factories import ContactFactory, ContactListFactory, FieldFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model", ["contact", "contactlist", "field", "suppression", "consentrecord"]
)
def test_changelists_open(operator_client, model):
    contact = ContactFactory()
    ContactListFactory(workspace=contact.workspace)
    FieldFactory(workspace=contact.workspace)
    ConsentRecord.objects.create(
        workspace=contact.workspace, contact=contact, action="granted", method="admin"
    )
    response = operator_client.get(reverse(f"admin:contacts_{model}_changelist"))
    assert response.status_code == 200


def test_operator_adds_platform_wide_suppression(operator_client):
    response = operator_client.post(
        reverse("admin:contacts_suppression_add"),
        {
            "workspace": "",
            "email": "Abuser@Example.COM",
            "reason": "manual",
            "source": "abuse desk",
        },
    )
    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert suppression.workspace is None
    assert suppression.email == "Abuser@example.com"
    assert suppression.address_hash == address_hash("abuser@example.com")
    assert not may_send_to(workspace=WorkspaceFactory(), address="abuser@example.com")
    assert AuditEntry.objects.filter(verb="suppression.added", actor=operator_client.user).exists()


def test_duplicate_platform_suppression_is_refused(operator_client):
    url = reverse("admin:contacts_suppression_add")
    data = {"workspace": "", "email": "dup@example.com", "reason": "manual", "source": ""}
    operator_client.post(url, data)
    response = operator_client.post(url, data)
    assert response.status_code == 200
    assert "already suppressed" in response.content.decode()
    assert Suppression.objects.count() == 1


def test_consent_records_are_read_only_in_admin(operator_client):
    contact = ContactFactory()
    record = ConsentRecord.objects.create(
        workspace=contact.workspace,
        contact=contact,
        action="granted",
        method="admin",
        email=contact.email,
    )
    assert operator_client.get(reverse("admin:contacts_consentrecord_add")).status_code == 403
    change_url = reverse("admin:contacts_consentrecord_change", args=[record.pk])
    view = operator_client.get(change_url)
    assert view.status_code == 200
    assert b'name="_save"' not in view.content
    assert operator_client.post(change_url, {"action": "withdrawn"}).status_code == 403
    delete_url = reverse("admin:contacts_consentrecord_delete", args=[record.pk])
    assert operator_client.post(delete_url, {"post": "yes"}).status_code == 403
    record.refresh_from_db()
    assert record.action == "granted"
