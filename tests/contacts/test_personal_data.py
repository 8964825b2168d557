import pytest
from django.db import connection

from contacts import personal_data
from contacts.models import ConsentRecord, Contact, Suppression
from contacts.services.consent import consent_record_add
from contacts.services.contacts import contact_create
from tests.factories import ContactFactory, SubscriptionFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def _person(workspace):
    contact = ContactFactory(workspace=workspace, email="Erin@example.com", first_name="Erin")
    subscription = SubscriptionFactory(contact=contact)
    consent_record_add(
        contact=contact,
        contact_list=subscription.contact_list,
        action="granted",
        method="form",
        ip="203.0.113.5",
        user_agent="Mozilla/5.0 Erin's browser",
        consent_text="Yes please",
    )
    return contact


def test_export_holds_this_persons_rows_and_nobody_elses():
    workspace = WorkspaceFactory()
    _person(workspace)
    ContactFactory(workspace=workspace, email="other@example.com")
    ContactFactory(email="erin@example.com")  # same address, another workspace
    data = personal_data.export(workspace=workspace, email="erin@example.com")
    assert [row["email"] for row in data["contacts"]] == ["Erin@example.com"]
    assert len(data["subscriptions"]) == 1
    [consent] = data["consent_records"]
    assert (consent["ip"], consent["consent_text"]) == ("203.0.113.5", "Yes please")


def test_erase_leaves_no_trace_but_a_tombstone_and_the_consent_proof():
    workspace = WorkspaceFactory()
    _person(workspace)
    personal_data.erase(workspace=workspace, email="erin@example.com")
    assert not Contact.objects.filter(email__iexact="erin@example.com").exists()
    record = ConsentRecord.objects.get(workspace=workspace)
    assert (record.email, record.ip, record.user_agent) == ("", None, "")
    assert record.consent_text == "Yes please"  # what was agreed stays
    tombstone = Suppression.objects.get(workspace=workspace)
    assert (tombstone.reason, tombstone.email) == ("erased", "")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM contacts_consentrecord WHERE email ILIKE %s OR ip IS NOT NULL",
            ["%erin%"],
        )
        assert cursor.fetchone()[0] == 0


def test_erased_address_cannot_be_added_again():
    from accounts.errors import ApplicationError

    workspace = WorkspaceFactory()
    _person(workspace)
    personal_data.erase(workspace=workspace, email="erin@example.com")
    with pytest.raises(ApplicationError, match="suppression"):
        contact_create(workspace=workspace, email="ERIN@example.com", acting_user=None)


def test_consent_records_cannot_be_edited_or_deleted_except_redaction():
    workspace = WorkspaceFactory()
    contact = _person(workspace)
    record = ConsentRecord.objects.get(contact=contact)
    record.consent_text = "changed"
    with pytest.raises(TypeError):
        record.save()
    with pytest.raises(TypeError):
        record.delete()
    with pytest.raises(TypeError):
        ConsentRecord.objects.filter(pk=record.pk).update(consent_text="x")
    with pytest.raises(TypeError):
        ConsentRecord.objects.filter(pk=record.pk).delete()
