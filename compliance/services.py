"""Writes of the public unsubscribe and preference pages: the person acts on their own
consent through a signed link, so acting_user is None and every change goes through the
contacts services (consent records, suppressions, their audit entries)."""

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import Workspace
from contacts.models import ConsentRecord, Contact, ContactList, Subscription, Suppression
from contacts.services.subscriptions import subscription_subscribe, subscription_unsubscribe
from contacts.services.suppressions import REMOVABLE_REASONS, suppression_add
from contacts.suppressions import address_hashes

logger = logging.getLogger(__name__)

METHOD = ConsentRecord.Method.FORM


@dataclass
class PreferenceChanges:
    subscribed: list[ContactList] = field(default_factory=list)
    unsubscribed: list[ContactList] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _active_lists(contact: Contact) -> list[ContactList]:
    return list(
        ContactList.objects.filter(
            subscriptions__contact=contact,
            subscriptions__status__in=[
                Subscription.Status.SUBSCRIBED,
                Subscription.Status.PENDING,
            ],
        ).order_by("pk")
    )


@transaction.atomic
def contact_unsubscribe_by_link(
    *,
    contact: Contact,
    contact_list: ContactList | None,
    campaign_id: int | None = None,
    source: str,
    ip: str | None = None,
    user_agent: str = "",
) -> list[ContactList]:
    """Leave one list, or (no list) every list of the workspace plus a suppression there.

    Idempotent: a second call finds nothing left to change and writes nothing.
    """
    Contact.objects.select_for_update().filter(pk=contact.pk).first()  # one change at a time
    lists = [contact_list] if contact_list is not None else _active_lists(contact)
    left = [
        each
        for each in lists
        if subscription_unsubscribe(
            contact=contact,
            contact_list=each,
            method=METHOD,
            source=source,
            campaign_id=campaign_id,
            ip=ip,
            user_agent=user_agent,
        )
        is not None
    ]
    if left:
        audit_record(
            workspace=contact.workspace,
            actor=None,
            verb="contact.unsubscribed",
            target=contact,
            details={
                "lists": [each.pk for each in left],
                "campaign_id": campaign_id,
                "source": source,
            },
            ip=ip,
        )
    if contact_list is None:
        suppression_add(
            workspace=contact.workspace,
            email=contact.email,
            reason=Suppression.Reason.UNSUBSCRIBED,
            source=source,
            acting_user=None,
        )
    return left


@transaction.atomic
def contact_complaint_record(
    *,
    workspace: Workspace,
    address: str,
    contact: Contact | None,
    campaign_id: int | None,
    source: str,
) -> Suppression:
    """A spam complaint: the contact leaves every list (consent records naming the
    campaign), is marked complained, and the address is suppressed for good at once, even
    when the contact is gone. Idempotent: a second call changes and audits nothing."""
    left: list[ContactList] = []
    status_changed = False
    if contact is not None:
        contact = Contact.objects.select_for_update().filter(pk=contact.pk).first()
    if contact is not None:
        for each in _active_lists(contact):
            subscription_unsubscribe(
                contact=contact,
                contact_list=each,
                method=METHOD,
                source=source,
                campaign_id=campaign_id,
            )
            left.append(each)
        if contact.status != Contact.Status.COMPLAINED:
            contact.status = Contact.Status.COMPLAINED
            contact.updated_at = timezone.now()
            contact.save(update_fields=["status", "updated_at"])
            status_changed = True
    was_suppressed = Suppression.objects.filter(
        workspace=workspace, address_hash__in=address_hashes(address)
    ).exists()
    suppression = suppression_add(
        workspace=workspace,
        email=address,
        reason=Suppression.Reason.COMPLAINT,
        source=source,
        acting_user=None,
    )
    reason_changed = suppression.reason in REMOVABLE_REASONS
    if reason_changed:
        # A marketer may lift an unsubscribe or a bounce suppression, never a complaint.
        suppression.reason, suppression.source = Suppression.Reason.COMPLAINT, source[:300]
        suppression.save(update_fields=["reason", "source"])
    if left or status_changed or reason_changed or not was_suppressed:
        audit_record(
            workspace=workspace,
            actor=None,
            verb="contact.complained",
            target=contact if contact is not None else suppression,
            details={
                "email": address,
                "lists": [each.pk for each in left],
                "campaign_id": campaign_id,
                "source": source,
            },
        )
    return suppression


@transaction.atomic
def contact_preferences_update(
    *,
    contact: Contact,
    wanted_list_ids: set[int],
    ip: str | None = None,
    user_agent: str = "",
) -> PreferenceChanges:
    """Apply the preference center's checkboxes to the lists the contact is on.

    Ids of lists the contact is not on (another workspace's, or made up) are ignored and
    logged: the page only ever offers the contact's own lists.
    """
    subscriptions = {
        s.contact_list_id: s
        for s in Subscription.objects.select_for_update()
        .filter(contact=contact, workspace_id=contact.workspace_id)
        .select_related("contact_list")
    }
    foreign = wanted_list_ids - subscriptions.keys()
    if foreign:
        logger.warning(
            "Preference center: contact %s named lists %s that are not theirs; ignored.",
            contact.pk,
            sorted(foreign),
        )
    changes = PreferenceChanges()
    source = "Preference center"
    for list_id, subscription in subscriptions.items():
        is_on = subscription.status == Subscription.Status.SUBSCRIBED
        wants = list_id in wanted_list_ids
        if wants and not is_on:
            try:
                subscription_subscribe(
                    contact=contact,
                    contact_list=subscription.contact_list,
                    method=METHOD,
                    source=source,
                    ip=ip,
                    user_agent=user_agent,
                )
            except ApplicationError as error:
                changes.refused.append(f"{subscription.contact_list.name}: {error.message}")
            else:
                changes.subscribed.append(subscription.contact_list)
        elif not wants and subscription.status != Subscription.Status.UNSUBSCRIBED:
            subscription_unsubscribe(
                contact=contact,
                contact_list=subscription.contact_list,
                method=METHOD,
                source=source,
                ip=ip,
                user_agent=user_agent,
            )
            changes.unsubscribed.append(subscription.contact_list)
    if changes.subscribed or changes.unsubscribed:
        audit_record(
            workspace=contact.workspace,
            actor=None,
            verb="contact.preferences_updated",
            target=contact,
            details={
                "subscribed": [each.pk for each in changes.subscribed],
                "unsubscribed": [each.pk for each in changes.unsubscribed],
            },
            ip=ip,
        )
    return changes
