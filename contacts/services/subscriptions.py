"""Subscribing and unsubscribing, with the consent record that proves each change."""

from django.db import transaction
from django.utils import timezone

from accounts.errors import ApplicationError
from accounts.models import User
from contacts.models import ConsentRecord, Contact, ContactList, Subscription
from contacts.services.consent import consent_record_add
from contacts.suppressions import suppressed_hashes


@transaction.atomic
def subscription_subscribe(
    *,
    contact: Contact,
    contact_list: ContactList,
    method: str,
    pending: bool = False,
    source: str = "",
    consent_text: str = "",
    ip: str | None = None,
    user_agent: str = "",
    actor: User | None = None,
) -> Subscription:
    """Subscribe (or mark pending a double opt-in) and record the consent given.

    A contact that bounced, complained or unsubscribed, or whose address is suppressed, is
    never subscribed again by this path: it raises ApplicationError.
    """
    if contact.status != Contact.Status.ACTIVE:
        raise ApplicationError(f"{contact.email} is {contact.get_status_display().lower()}.")
    if suppressed_hashes(workspace=contact.workspace, addresses=[contact.email]):
        raise ApplicationError(f"{contact.email} is on a suppression list.")
    now = timezone.now()
    subscription, _ = Subscription.objects.select_for_update().get_or_create(
        contact=contact,
        contact_list=contact_list,
        defaults={"workspace_id": contact.workspace_id, "status": Subscription.Status.PENDING},
    )
    target = Subscription.Status.PENDING if pending else Subscription.Status.SUBSCRIBED
    if subscription.status != Subscription.Status.SUBSCRIBED:
        subscription.status = target
        subscription.subscribed_at = now if target == Subscription.Status.SUBSCRIBED else None
        subscription.unsubscribed_at = None
        subscription.save(update_fields=["status", "subscribed_at", "unsubscribed_at"])
    consent_record_add(
        contact=contact,
        contact_list=contact_list,
        action=ConsentRecord.Action.GRANTED,
        method=method,
        source=source,
        consent_text=consent_text,
        ip=ip,
        user_agent=user_agent,
        actor=actor,
    )
    return subscription


@transaction.atomic
def subscription_confirm(
    *, subscription: Subscription, ip: str | None, user_agent: str, source: str = ""
) -> Subscription:
    """Double opt-in: the person clicked the link in the confirmation mail."""
    subscription = (
        Subscription.objects.select_for_update()
        .select_related("contact", "contact_list")
        .get(pk=subscription.pk)
    )
    if subscription.status == Subscription.Status.SUBSCRIBED:
        return subscription
    if subscription.status != Subscription.Status.PENDING:
        raise ApplicationError("This subscription was cancelled.")
    if subscription.contact.status != Contact.Status.ACTIVE:
        raise ApplicationError("This address can no longer be subscribed.")
    subscription.status = Subscription.Status.SUBSCRIBED
    subscription.subscribed_at = timezone.now()
    subscription.save(update_fields=["status", "subscribed_at"])
    consent_record_add(
        contact=subscription.contact,
        contact_list=subscription.contact_list,
        action=ConsentRecord.Action.CONFIRMED,
        method=ConsentRecord.Method.FORM,
        source=source,
        ip=ip,
        user_agent=user_agent,
    )
    return subscription


@transaction.atomic
def subscription_unsubscribe(
    *,
    contact: Contact,
    contact_list: ContactList,
    method: str,
    source: str = "",
    campaign_id: int | None = None,
    campaign_name: str = "",
    ip: str | None = None,
    user_agent: str = "",
    actor: User | None = None,
) -> Subscription | None:
    """Leave one list; recorded as withdrawn consent. No subscription: nothing to do."""
    subscription = (
        Subscription.objects.select_for_update()
        .filter(contact=contact, contact_list=contact_list)
        .first()
    )
    if subscription is None or subscription.status == Subscription.Status.UNSUBSCRIBED:
        return subscription
    subscription.status = Subscription.Status.UNSUBSCRIBED
    subscription.unsubscribed_at = timezone.now()
    subscription.save(update_fields=["status", "unsubscribed_at"])
    consent_record_add(
        contact=contact,
        contact_list=contact_list,
        action=ConsentRecord.Action.WITHDRAWN,
        method=method,
        source=source,
        campaign_id=campaign_id,
        campaign_name=campaign_name,
        ip=ip,
        user_agent=user_agent,
        actor=actor,
    )
    return subscription
