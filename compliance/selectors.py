"""Reads of the public unsubscribe and preference pages, always after a token verified."""

from dataclasses import dataclass

from compliance.tokens import TokenClaim
from contacts.models import Contact, ContactList, Subscription, Suppression
from contacts.suppressions import address_hashes


def token_contact_get(*, claim: TokenClaim) -> Contact | None:
    """The contact a verified token names, only inside the workspace the token names."""
    return (
        Contact.objects.filter(pk=claim.contact_id, workspace_id=claim.workspace_id)
        .select_related("workspace")
        .first()
    )


def token_list_get(*, claim: TokenClaim) -> ContactList | None:
    """The list an unsubscribe token names, if it still exists in the token's workspace."""
    if claim.list_id is None:
        return None
    return ContactList.objects.filter(pk=claim.list_id, workspace_id=claim.workspace_id).first()


@dataclass(frozen=True)
class PreferenceRow:
    contact_list: ContactList
    status: str

    @property
    def is_on(self) -> bool:
        return self.status == Subscription.Status.SUBSCRIBED

    @property
    def is_pending(self) -> bool:
        return self.status == Subscription.Status.PENDING


def preference_rows(*, contact: Contact) -> list[PreferenceRow]:
    """The lists this contact has ever been on in its workspace, with their state."""
    subscriptions = (
        Subscription.objects.filter(contact=contact, workspace_id=contact.workspace_id)
        .select_related("contact_list")
        .order_by("contact_list__name")
    )
    return [PreferenceRow(contact_list=s.contact_list, status=s.status) for s in subscriptions]


def contact_opted_out_everywhere(*, contact: Contact) -> bool:
    """True when the address is suppressed in its workspace because the person unsubscribed."""
    return Suppression.objects.filter(
        workspace_id=contact.workspace_id,
        address_hash__in=address_hashes(contact.email),
        reason=Suppression.Reason.UNSUBSCRIBED,
    ).exists()
