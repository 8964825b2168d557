"""A spam complaint: every list left with consent records naming the campaign, the address
suppressed for good, the contact marked complained, one audit entry; idempotent."""

import pytest

from accounts.models import AuditEntry
from compliance.services import contact_complaint_record
from contacts.models import ConsentRecord, Contact, Subscription, Suppression
from contacts.services.suppressions import suppression_add
from tests.factories import ContactFactory, ContactListFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _subscribed_twice():
    contact = ContactFactory(email="reader@mail.test")
    for _ in range(2):
        SubscriptionFactory(
            contact=contact, contact_list=ContactListFactory(workspace=contact.workspace)
        )
    return contact


def test_complaint_leaves_every_list_suppresses_and_marks_the_contact():
    contact = _subscribed_twice()

    suppression = contact_complaint_record(
        workspace=contact.workspace,
        address=contact.email,
        contact=contact,
        campaign_id=None,
        source="Spam complaint (abuse) about Spring, via inbound",
    )

    assert suppression.reason == Suppression.Reason.COMPLAINT
    assert suppression.workspace_id == contact.workspace_id
    assert set(Subscription.objects.filter(contact=contact).values_list("status", flat=True)) == {
        Subscription.Status.UNSUBSCRIBED
    }
    withdrawn = ConsentRecord.objects.filter(contact=contact, action=ConsentRecord.Action.WITHDRAWN)
    assert withdrawn.count() == 2
    assert all("Spam complaint" in record.source for record in withdrawn)
    contact.refresh_from_db()
    assert contact.status == Contact.Status.COMPLAINED
    entries = AuditEntry.objects.filter(verb="contact.complained")
    assert entries.count() == 1
    assert entries.get().target_id == str(contact.pk)


def test_a_second_complaint_changes_and_audits_nothing():
    contact = _subscribed_twice()
    for _ in range(2):
        contact_complaint_record(
            workspace=contact.workspace,
            address=contact.email,
            contact=contact,
            campaign_id=None,
            source="complaint",
        )
    assert ConsentRecord.objects.filter(action=ConsentRecord.Action.WITHDRAWN).count() == 2
    assert Suppression.objects.filter(workspace=contact.workspace).count() == 1
    assert AuditEntry.objects.filter(verb="contact.complained").count() == 1
    assert AuditEntry.objects.filter(verb="suppression.added").count() == 1


def test_complaint_turns_an_earlier_unsubscribe_suppression_into_a_lasting_one():
    contact = ContactFactory(email="reader@mail.test")
    suppression_add(
        workspace=contact.workspace,
        email=contact.email,
        reason=Suppression.Reason.UNSUBSCRIBED,
        acting_user=None,
    )
    suppression = contact_complaint_record(
        workspace=contact.workspace,
        address=contact.email,
        contact=contact,
        campaign_id=None,
        source="complaint",
    )
    assert suppression.reason == Suppression.Reason.COMPLAINT
    assert Suppression.objects.get(workspace=contact.workspace).reason == "complaint"


def test_complaint_without_a_contact_still_suppresses_the_address():
    contact = ContactFactory(email="gone@mail.test")
    workspace = contact.workspace
    contact.delete()
    suppression = contact_complaint_record(
        workspace=workspace,
        address="Gone@mail.test",
        contact=None,
        campaign_id=None,
        source="complaint",
    )
    assert suppression.reason == Suppression.Reason.COMPLAINT
    assert suppression.email.lower() == "gone@mail.test"
    assert AuditEntry.objects.filter(verb="contact.complained").count() == 1


def test_complaint_in_one_workspace_leaves_the_same_address_elsewhere_alone():
    contact = _subscribed_twice()
    other = ContactFactory(email=contact.email)
    SubscriptionFactory(contact=other)
    contact_complaint_record(
        workspace=contact.workspace,
        address=contact.email,
        contact=contact,
        campaign_id=None,
        source="complaint",
    )
    other.refresh_from_db()
    assert other.status == Contact.Status.ACTIVE
    assert not Suppression.objects.filter(workspace=other.workspace).exists()
    assert Subscription.objects.get(contact=other).status == Subscription.Status.SUBSCRIBED
