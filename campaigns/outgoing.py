"""A campaign's complete message for one contact, as bytes on the wire.

`campaign_render` (and anything else that must show a message exactly as sent) builds it
here: the parts from `personalise`, then the headers a real send carries, then every
finisher of `message_finishers`, then the bytes with CRLF line endings.

    message = campaign_message(campaign=campaign, contact=contact)
    raw = message_bytes(message)

`message_finishers` is the hook through which sending adds what only it knows: tracked
links and the open pixel, VERP Return-Path, Feedback-ID, the DKIM signature. Campaigns
may not import sending, so sending appends its callables in `AppConfig.ready()`:

    from campaigns import outgoing
    outgoing.message_finishers += [links_rewrite, dkim_sign]

Each finisher is called as `finisher(message, campaign, contact)` and returns the message
to pass on (the same object, changed, or a new one). They run in list order; a signer must
come last and sign exactly what `message_bytes` writes.
"""

from collections.abc import Callable
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import Message
from email.utils import make_msgid
from io import BytesIO

from campaigns.models import Campaign
from campaigns.personalise import campaign_compile, campaign_email, recipient_context
from contacts.models import Contact

MessageFinisher = Callable[[Message, Campaign, Contact], Message]
MessageRenderer = Callable[[Campaign, Contact], bytes | None]

message_finishers: list[MessageFinisher] = []
# Higher apps that build the real wire bytes (sending: tracked links, VERP, DKIM) register
# here; the first renderer that returns bytes wins, None passes to the next.
message_renderers: list[MessageRenderer] = []


class InvalidFromAddress(ValueError):
    """The campaign's From address has no domain a Message-ID can name."""


def message_id_domain(campaign: Campaign) -> str:
    """The From address's domain (IDNA-encoded): a Message-ID names the sender's domain,
    never the host that happened to build the message."""
    try:
        domain = Address(addr_spec=campaign.from_email.strip()).domain
        ascii_domain = domain.encode("idna").decode("ascii")
    except (ValueError, IndexError, UnicodeError):
        raise InvalidFromAddress(f"{campaign.from_email!r} is not a valid From address.") from None
    if "." not in ascii_domain:
        raise InvalidFromAddress(f"{campaign.from_email!r} is not a valid From address.")
    return ascii_domain.lower()


def campaign_message(*, campaign: Campaign, contact: Contact) -> Message:
    """The MIME message this contact would receive, finishers applied.

    Raises TemplateError (with line and column) when the campaign does not compile,
    ContextError for a contact whose values are not plain, InvalidFromAddress without a
    usable From address.
    """
    domain = message_id_domain(campaign)
    context = recipient_context(campaign=campaign, contact=contact)
    rendered = campaign_compile(campaign).render(context)
    email = campaign_email(
        campaign=campaign,
        rendered=rendered,
        to=[contact.email],
        unsubscribe_link=context["unsubscribe_url"],
    )
    email.extra_headers["Message-ID"] = make_msgid(domain=domain)
    message = email.message()  # adds Date (and MIME-Version)
    for finisher in message_finishers:
        message = finisher(message, campaign, contact)
    return message


def message_bytes(message: Message) -> bytes:
    """The message as SMTP carries it: CRLF line endings, 8-bit parts left as they are."""
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False).flatten(message, linesep="\r\n")
    return buffer.getvalue()


def campaign_message_bytes(*, campaign: Campaign, contact: Contact) -> bytes:
    """The bytes this contact would receive: a registered renderer's when one can build them
    (the send path's own builder), else this module's message with its finishers."""
    message = campaign_message(campaign=campaign, contact=contact)  # raises what is wrong
    for renderer in message_renderers:
        raw = renderer(campaign, contact)
        if raw is not None:
            return raw
    return message_bytes(message)
