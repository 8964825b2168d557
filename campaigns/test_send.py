"""Test sends: the campaign as a chosen contact (or sample values) would get it, to a few
addresses the marketer types.

Built by the same renderer and MIME builder as the real send. It leaves through the
transactional lane (accounts.mail.mail_enqueue: its own Celery queue and worker, then
django.core.mail and the platform's email backend), so a test arrives within seconds even
while campaigns are sending. A draft may be tested before its checklist passes; that is
what tests are for.
"""

import re

from django.core.mail import BadHeaderError

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.mail import mail_enqueue
from accounts.models import User, Workspace
from accounts.throttles import rate_limit_hit
from campaigns.models import Campaign
from campaigns.personalise import (
    address_is_valid,
    campaign_compile,
    campaign_email,
    recipient_context,
)
from campaigns.preview import preview_context
from campaigns.rendering import ContextError, TemplateError
from contacts.models import Contact

MAX_ADDRESSES = 5
SUBJECT_PREFIX = "[Test] "
# Test sends reach any address typed in: a cap per workspace keeps them from becoming a
# way around the send pipeline's limits.
SENDS_PER_HOUR = 30
_SEPARATORS = re.compile(r"[\s,;]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def split_addresses(raw: str) -> list[str]:
    """Addresses typed one per line or separated by commas, semicolons or spaces."""
    return [part for part in _SEPARATORS.split(raw or "") if part]


def clean_addresses(addresses: list[str]) -> list[str]:
    """1 to MAX_ADDRESSES valid addresses, duplicates (in any case) dropped, order kept."""
    cleaned, seen = [], set()
    for raw in addresses:
        address = raw.strip()
        if not address:
            continue
        if _CONTROL.search(address) or not address_is_valid(address):
            raise ApplicationError(f"“{address[:100]}” is not a valid email address.")
        if address.lower() not in seen:
            seen.add(address.lower())
            cleaned.append(address)
    if not cleaned:
        raise ApplicationError("Enter at least one address to send the test to.")
    if len(cleaned) > MAX_ADDRESSES:
        raise ApplicationError(
            f"Send a test to at most {MAX_ADDRESSES} addresses at a time ({len(cleaned)} given)."
        )
    return cleaned


def _check_sender(campaign: Campaign) -> None:
    workspace: Workspace = campaign.workspace
    if workspace.status == Workspace.Status.SUSPENDED:
        raise ApplicationError("The workspace is suspended: it cannot send, not even tests.")
    address = campaign.from_email.strip()
    if not address or _CONTROL.search(address) or not address_is_valid(address):
        raise ApplicationError("Add a valid From address to the campaign before sending a test.")


def campaign_test_send(
    *,
    campaign: Campaign,
    addresses: list[str],
    contact: Contact | None,
    acting_user: User | None,
) -> list[str]:
    """Send the campaign, subject marked "[Test] ", to each address; the addresses sent to.

    With a contact, the merge values and links are that contact's (its unsubscribe link
    works); without, sample values and placeholder links, as in the editor's preview.
    """
    recipients = clean_addresses(addresses)
    if contact is not None and contact.workspace_id != campaign.workspace_id:
        raise ApplicationError("No such contact.")
    _check_sender(campaign)
    try:
        compiled = campaign_compile(campaign)
    except TemplateError as error:
        raise ApplicationError(f"The message does not compile: {error}") from error
    if contact is None:
        context = preview_context(workspace=campaign.workspace, contact=None)
    else:
        context = recipient_context(campaign=campaign, contact=contact)
    try:
        rendered = compiled.render(context)
    except (TemplateError, ContextError) as error:
        raise ApplicationError(f"The message does not render: {error}") from error
    if not rate_limit_hit(
        kind="campaign-test-send",
        value=str(campaign.workspace_id),
        limit=SENDS_PER_HOUR,
        window_seconds=3600,
    ):
        raise ApplicationError(
            f"This workspace sent {SENDS_PER_HOUR} tests in the last hour: try again later."
        )
    # Each address gets its own message, handed to the transactional lane (its own queue
    # and worker), the one system mail takes: a test never waits behind a campaign.
    try:
        for address in recipients:
            message = campaign_email(
                campaign=campaign,
                rendered=rendered,
                to=[address],
                unsubscribe_link=context["unsubscribe_url"],
                subject_prefix=SUBJECT_PREFIX,
            )
            mail_enqueue(
                subject=message.subject,
                text=message.body,
                html=rendered.html,
                to=[address],
                from_email=message.from_email,
                reply_to=list(message.reply_to) or None,
                headers=dict(message.extra_headers),
            )
    except (BadHeaderError, ValueError) as error:
        raise ApplicationError(f"The message has an invalid header: {error}") from error
    audit_record(
        workspace=campaign.workspace,
        actor=acting_user,
        verb="campaign.test_sent",
        target=campaign,
        details={
            "addresses_count": len(recipients),
            "contact_id": contact.pk if contact is not None else None,
        },
    )
    return recipients
