"""A campaign's message for one contact.

The web version, test sends, `campaign_render` and (through sending) the real send all
build their message here, so that what a marketer checks is what recipients get:

    compiled = campaign_compile(campaign)                       # once per campaign
    rendered = compiled.render(recipient_context(campaign=campaign, contact=contact))
"""

import re
from email.headerregistry import Address
from email.utils import formataddr
from typing import Any

from django.core.mail import EmailMultiAlternatives

from campaigns.models import Campaign
from campaigns.rendering import CompiledMessage, RenderedMessage, compile_message
from compliance.tokens import preferences_url, unsubscribe_url, web_version_url
from contacts.models import Contact

_SLOT = re.compile(r"\{\{\s*content\s*\}\}")


def compose(*, layout: str | None, body: str) -> str:
    """The layout with the body in its `{{ content }}` slot (the body alone without one)."""
    if not layout or not _SLOT.search(layout):
        return body
    return _SLOT.sub(lambda _: body, layout, count=1)


_OWN_LAYOUT = object()


def campaign_compile(
    campaign: Campaign,
    *,
    subject: str | None = None,
    html: str | None = None,
    layout: str | object = _OWN_LAYOUT,
) -> CompiledMessage:
    """The campaign's parts compiled once (TemplateError names what is wrong).

    `subject` and `html` override the campaign's own, for an A/B variant; `layout` the
    template's current HTML (a send uses the layout frozen when it started; "": none).
    """
    if layout is _OWN_LAYOUT:
        layout = campaign.template.html if campaign.template_id else None
    return compile_message(
        subject=campaign.subject if subject is None else subject,
        preheader=campaign.preheader,
        html=compose(layout=layout, body=campaign.html if html is None else html),
        text=campaign.text or None,
    )


def contact_values(contact: Contact) -> dict[str, Any]:
    """The merge values a contact contributes: plain values only, never the instance."""
    return {
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "attributes": contact.attributes or {},
    }


def recipient_context(*, campaign: Campaign, contact: Contact) -> dict[str, Any]:
    """Every merge value of one recipient, with working signed links (no web version link
    when the campaign offers none: its page answers 404)."""
    ids = {"workspace_id": campaign.workspace_id, "contact_id": contact.pk}
    return {
        **contact_values(contact),
        "postal_address": campaign.workspace.postal_address,
        "unsubscribe_url": unsubscribe_url(**ids, campaign_id=campaign.pk),
        "preferences_url": preferences_url(**ids),
        "web_version_url": (
            web_version_url(**ids, campaign_id=campaign.pk) if campaign.web_version else ""
        ),
    }


def from_header(campaign: Campaign) -> str:
    """The From header: the display name encoded as RFC 2047 needs, never a raw line break."""
    name = " ".join(campaign.from_name.split())
    return formataddr((name, campaign.from_email)) if name else campaign.from_email


def address_is_valid(address: str) -> bool:
    """A single addr-spec with a local part and a domain (what a From or To may hold)."""
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return bool(parsed.username and parsed.domain and "." in parsed.domain)


def campaign_email(
    *,
    campaign: Campaign,
    rendered: RenderedMessage,
    to: list[str],
    unsubscribe_link: str | None,
    subject_prefix: str = "",
) -> EmailMultiAlternatives:
    """The MIME message for rendered parts: text and HTML alternatives, List-Unsubscribe
    with its one-click POST (RFC 8058) when there is a link to give."""
    headers = {}
    if unsubscribe_link:
        headers["List-Unsubscribe"] = f"<{unsubscribe_link}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = EmailMultiAlternatives(
        subject=subject_prefix + rendered.subject,
        body=rendered.text,
        from_email=from_header(campaign),
        to=to,
        reply_to=[campaign.reply_to] if campaign.reply_to else None,
        headers=headers,
    )
    message.attach_alternative(rendered.html, "text/html")
    return message
