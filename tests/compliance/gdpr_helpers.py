"""Shared set-up of the GDPR tests: private files in a temporary folder, a person with a
row in every contacts table, and a helper that runs on-commit work (tasks, mail)."""

from contacts.services.consent import consent_record_add
from tests.factories import ContactFactory, SubscriptionFactory

PERSON = {
    "email": "Erin.Quist@example.com",
    "first_name": "Erinwyn",
    "last_name": "Quistgaard",
    "ip": "203.0.113.77",
}


def make_person(
    workspace,
    *,
    email=PERSON["email"],
    first=PERSON["first_name"],
    last=PERSON["last_name"],
    ip=PERSON["ip"],
):
    """A contact subscribed to a list with a consent record carrying their IP and browser."""
    contact = ContactFactory(workspace=workspace, email=email, first_name=first, last_name=last)
    subscription = SubscriptionFactory(contact=contact)
    consent_record_add(
        contact=contact,
        contact_list=subscription.contact_list,
        action="granted",
        method="form",
        ip=ip,
        user_agent=f"Mozilla/5.0 ({first}'s browser)",
        consent_text="Yes, send me the newsletter",
    )
    return contact
