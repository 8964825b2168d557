"""Public signup forms, the write side: a submission, its confirmation, and form changes.

A submission answers the same way whatever the address is (new, known, subscribed,
suppressed): only a malformed address, a missing consent tick and too many submissions from
one client are told apart, and none of them depends on who the address belongs to.
"""

import enum

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Lower
from django.urls import reverse

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.mail import templated_mail_send
from accounts.models import User, Workspace
from contacts.addresses import InvalidAddress, email_key, normalize_email
from contacts.models import ConsentRecord, Contact, ContactList, SignupForm, Subscription
from contacts.services.contacts import contact_create
from contacts.services.subscriptions import subscription_confirm, subscription_subscribe
from contacts.signup import signup_confirmation_claim, signup_form_url, signup_ip_allows
from contacts.suppressions import suppressed_hashes
from contacts.tokens import ConfirmationClaim, confirmation_token_make

FORM_FIELDS = (
    "name",
    "contact_list",
    "title",
    "intro",
    "consent_text",
    "button_label",
    "success_message",
    "ask_name",
    "is_enabled",
)


class SignupThrottled(ApplicationError):
    """Too many submissions from one client address in the window."""


class SignupOutcome(enum.Enum):
    """What a submission did; the public response is the same for every outcome."""

    IGNORED = "ignored"  # honeypot, suppressed or inactive address: nothing written
    ALREADY_SUBSCRIBED = "already_subscribed"
    CONFIRMATION_SENT = "confirmation_sent"
    CONFIRMATION_HELD = "confirmation_held"  # pending, but this address had its mail today
    SUBSCRIBED = "subscribed"  # single opt-in list


def signup_submit(
    *,
    form: SignupForm,
    email: str,
    first_name: str = "",
    last_name: str = "",
    consent_given: bool,
    honeypot: str = "",
    ip: str | None,
    user_agent: str = "",
) -> SignupOutcome:
    """Take one public submission: limits, honeypot, validation, then the subscription."""
    # Counted before anything else, so that a burst is limited however it is shaped.
    if not signup_ip_allows(ip=ip):
        raise SignupThrottled("Too many signups from your network. Please try again later.")
    if honeypot.strip():
        return SignupOutcome.IGNORED
    try:
        address = normalize_email(email)
    except InvalidAddress as error:
        raise ApplicationError(
            f"Enter a valid email address: {error}.", extra={"field": "email"}
        ) from None
    if not consent_given:
        raise ApplicationError("Please tick the box to agree.", extra={"field": "consent"})
    return _signup_record(
        form=form,
        address=address,
        first_name=first_name,
        last_name=last_name,
        ip=ip,
        user_agent=user_agent,
    )


@transaction.atomic
def _signup_record(
    *,
    form: SignupForm,
    address: str,
    first_name: str,
    last_name: str,
    ip: str | None,
    user_agent: str,
) -> SignupOutcome:
    workspace, contact_list = form.workspace, form.contact_list
    if suppressed_hashes(workspace=workspace, addresses=[address]):
        return SignupOutcome.IGNORED
    contact = _contact_find_or_create(
        workspace=workspace, address=address, first_name=first_name, last_name=last_name
    )
    if contact is None or contact.status != Contact.Status.ACTIVE:
        return SignupOutcome.IGNORED
    existing = (
        Subscription.objects.filter(contact=contact, contact_list=contact_list)
        .values_list("status", flat=True)
        .first()
    )
    if existing == Subscription.Status.SUBSCRIBED:
        return SignupOutcome.ALREADY_SUBSCRIBED
    # Someone who left this list comes back only by confirming, even on a single opt-in
    # list: otherwise anyone could re-subscribe them by typing their address.
    needs_confirmation = (
        contact_list.opt_in == ContactList.OptIn.DOUBLE
        or existing == Subscription.Status.UNSUBSCRIBED
    )
    try:
        subscription = subscription_subscribe(
            contact=contact,
            contact_list=contact_list,
            method=ConsentRecord.Method.FORM,
            pending=needs_confirmation,
            source=signup_form_url(form=form),
            consent_text=form.consent_text,
            ip=ip,
            user_agent=user_agent,
        )
    except ApplicationError:  # suppressed or deactivated concurrently
        return SignupOutcome.IGNORED
    if not needs_confirmation:
        return SignupOutcome.SUBSCRIBED
    if not signup_confirmation_claim(email=address):
        return SignupOutcome.CONFIRMATION_HELD
    token = confirmation_token_make(subscription_id=subscription.pk, form_id=form.pk)
    templated_mail_send(
        template="contacts/email/confirm_subscription",
        to=[address],
        context={
            "workspace_name": workspace.name,
            "list_name": contact_list.name,
            "form_title": form.title,
            "confirm_url": settings.BASE_URL + reverse("signup:confirm", args=[token]),
            "max_age_days": max(1, settings.SIGNUP_CONFIRMATION_MAX_AGE_SECONDS // 86400),
        },
    )
    return SignupOutcome.CONFIRMATION_SENT


def _contact_find_or_create(
    *, workspace: Workspace, address: str, first_name: str, last_name: str
) -> Contact | None:
    """The workspace's contact for the address, created when new.

    A known contact's name is left alone: anyone can type anyone's address into a public form.
    """
    contacts = Contact.objects.for_workspace(workspace).alias(key=Lower("email"))
    contact = contacts.filter(key=email_key(address)).first()
    if contact is not None:
        return contact
    try:
        return contact_create(
            workspace=workspace,
            email=address,
            first_name=first_name,
            last_name=last_name,
            acting_user=None,
        )
    except ApplicationError:  # created concurrently, or suppressed in between
        return contacts.filter(key=email_key(address)).first()


def signup_confirm(*, claim: ConfirmationClaim, ip: str | None, user_agent: str) -> Subscription:
    """Double opt-in: the person pressed the button behind the confirmation link."""
    subscription = Subscription.objects.filter(pk=claim.subscription_id).first()
    if subscription is None:
        raise ApplicationError("This subscription no longer exists.")
    form = None
    if claim.form_id:
        form = SignupForm.objects.filter(
            pk=claim.form_id, workspace_id=subscription.workspace_id
        ).first()
    return subscription_confirm(
        subscription=subscription,
        ip=ip,
        user_agent=user_agent,
        source=signup_form_url(form=form) if form is not None else "",
    )


def _check_list(*, workspace: Workspace, contact_list: ContactList) -> None:
    if contact_list.workspace_id != workspace.pk:
        raise ApplicationError("Choose a list of this workspace.")


@transaction.atomic
def signup_form_create(*, workspace: Workspace, acting_user: User, **fields) -> SignupForm:
    _check_list(workspace=workspace, contact_list=fields["contact_list"])
    form = SignupForm.objects.create(
        workspace=workspace, **{name: fields[name] for name in FORM_FIELDS if name in fields}
    )
    audit_record(workspace=workspace, actor=acting_user, verb="signup_form.created", target=form)
    return form


@transaction.atomic
def signup_form_update(*, form: SignupForm, acting_user: User, **fields) -> SignupForm:
    _check_list(
        workspace=form.workspace, contact_list=fields.get("contact_list", form.contact_list)
    )
    changed = [
        name for name in FORM_FIELDS if name in fields and getattr(form, name) != fields[name]
    ]
    for name in changed:
        setattr(form, name, fields[name])
    if changed:
        form.save(update_fields=changed)
        audit_record(
            workspace=form.workspace,
            actor=acting_user,
            verb="signup_form.updated",
            target=form,
            details={"fields": changed},
        )
    return form


@transaction.atomic
def signup_form_delete(*, form: SignupForm, acting_user: User) -> None:
    """Delete a form; its snippets stop working, its consent records stay."""
    audit_record(
        workspace=form.workspace, actor=acting_user, verb="signup_form.deleted", target=form
    )
    form.delete()
