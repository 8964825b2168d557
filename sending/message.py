"""The message each recipient of a campaign gets, as the bytes a transport puts on the wire.

    builder = CampaignMessageBuilder(campaign)                  # once per campaign
    envelope = builder.for_variant(delivery.variant).build(delivery_id=…, contact=…)

Everything that is the same for every recipient is done once, when the builder is made:
the campaign is compiled (CSS inlined, text part derived), the sending domain and its DKIM
keys are loaded, and the fixed headers and the MIME skeleton are written out as bytes. Per
recipient, `build` only renders the merge values into the prepared parts, points links at
tracked URLs, adds the pixel, encodes both parts (when needed; C code), fills the few
headers that differ and signs. The MIME bytes are written here rather than by the stdlib
`email` package, whose EmailMessage alone costs ≈ 3 ms for a 40 KB newsletter against
≈ 1 ms for all of this before signing: the skeleton is multipart/alternative (text, then
HTML), each part 7bit when it is ASCII in lines that fit (nothing to encode) or else
quoted-printable, and every line ends in CRLF. The HTML part writes non-ASCII characters
as character references (`&#252;`), which keeps most HTML parts 7bit: quoted-printable
costs ≈ 8 µs per KB.

Tracked links and the pixel point at the sending domain's tracking host
(`https://links.<domain>`, a CNAME to SENDING_TRACKING_HOST) once the domain is verified
and that CNAME passed its check; before that, at BASE_URL. The operator's TLS certificate
must cover every such host (README, "Tracking"). A campaign with `track_clicks` off keeps
its links as written, one with `track_opens` off gets no pixel. Compliance links
(unsubscribe, preferences, web version) are recognised by BASE_URL, on which
compliance.tokens builds them, and are never tracked.

There is no Return-Path header: the receiving MTA writes it from MAIL FROM, which is the
VERP address (`Envelope.mail_from`). An address with a non-ASCII local part (EAI) is
written in UTF-8, never as an encoded word; such a message needs SMTPUTF8 on the way out.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from email.charset import Charset
from email.utils import format_datetime

from django.conf import settings
from django.utils import timezone

from accounts.errors import ApplicationError
from campaigns.models import Campaign, Variant
from campaigns.personalise import campaign_compile, recipient_context
from campaigns.rendering import CompiledMessage, ContextError, TemplateError
from contacts.models import Contact
from sending import links, verp
from sending.dkim import PreparedSigner
from sending.domain_names import InvalidDomain, domain_normalize
from sending.models import CampaignSend, Delivery, RecordState, SendingDomain
from sending.selectors import dkim_key_list_signing, sending_domain_for_from_address
from sending.transports.base import Envelope

CRLF = b"\r\n"
_FOLD_AT = 78
# Control characters and line separators: never inside a header value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# RFC 5322 specials: a display name holding one is written as a quoted string.
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
_UTF8 = Charset("utf-8")
_SLUG_UNSAFE = re.compile(r"[^a-z0-9-]+")
# The rest of a URL in the text part, from its "://" (the scheme is read back from there).
_TEXT_URL = re.compile(r"://[^\s<>\"]+")
_URL_TRAIL = ".,;:!?'"
_STYLE_BLOCK = re.compile(r"<style\b.*?</style\s*>", re.I | re.S)


class BuildError(ApplicationError):
    """A message cannot be made. From the constructor: the whole campaign cannot (an
    unverified From domain, no signing key, a template that does not compile, a header
    value with a line break); from `build`: this one recipient's cannot."""


def _clean(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise BuildError(f"The {what} holds a line break or control character.")
    return value


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 B-encoded words of at most 75 characters, cut between UTF-8 characters."""
    data = text.encode("utf-8")
    words, start = [], 0
    while start < len(data):
        # 42 octets: 56 base64 characters + 12 of frame, so "Subject: " and a word fit 78.
        end = min(start + 42, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return words


def _unstructured(text: str) -> str:
    """A Subject-like value: as it is when plain ASCII, else RFC 2047 encoded words."""
    if text.isascii() and "=?" not in text and all(len(word) < 900 for word in text.split()):
        return text
    return " ".join(_encoded_words(text))


def _phrase(name: str) -> str:
    """A display name as campaigns' from_header writes it (email.utils.formataddr's rules):
    atoms, a quoted string when it holds specials, or one encoded word when not ASCII.

    One word, even past RFC 2047's 75 characters: readers differ on the space between two
    encoded words of a phrase (the stdlib keeps it, RFC 2047 drops it), and every reader
    takes a long word.
    """
    name = " ".join(name.split())
    if not name.isascii() or "=?" in name:
        return _UTF8.header_encode(name)
    if _SPECIALS.search(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def _header(name: str, value: str) -> bytes:
    """One header field, folded at spaces to 78 characters where it can be, ending in CRLF.

    Folding only inserts CRLF before an existing space, so unfolding gives the value back;
    the first word stays on the field name's line (a value must not start with a fold).
    """
    line = f"{name}: {value}"
    if len(line) > _FOLD_AT:
        lines, current = [], ""
        for index, word in enumerate(line.split(" ")):
            if index == 0:
                current = word
            elif index > 1 and word and current.strip() and len(current) + len(word) >= _FOLD_AT:
                lines.append(current)
                current = " " + word
            else:
                current += " " + word
        lines.append(current)
        line = "\r\n".join(lines)
    return line.encode("utf-8") + CRLF


def _address(address: str, what: str) -> str:
    """An addr-spec with its domain in ASCII (IDNA); the local part as it is, UTF-8 if so."""
    local, at, domain = _clean(address.strip(), what).rpartition("@")
    if not at or not local:
        raise BuildError(f"The {what} {address!r} is not an email address.")
    if domain.isascii() and domain:  # contacts are stored with the domain in this form
        return f"{local}@{domain.lower()}"
    try:
        return f"{local}@{domain_normalize(domain)}"
    except InvalidDomain:
        raise BuildError(f"The {what} {address!r} has no valid domain.") from None


def _html_ascii(html: str) -> str:
    """The HTML with every non-ASCII character as a numeric character reference, which
    every HTML parser reads back as that character, so that the part needs no encoding;
    unchanged when a <style> block holds one (CSS does not read references)."""
    if html.isascii() or any(not block.isascii() for block in _STYLE_BLOCK.findall(html)):
        return html
    return html.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _part(content_type: str, text: str, *, encode: bool = False) -> tuple[bytes, bytes]:
    """(part headers, content) of one text part, CRLF line ends.

    ASCII without NUL whose lines all fit in 998 octets goes as it is (7bit: nothing to
    encode, and nothing an MTA would ever convert); anything else is quoted-printable
    UTF-8, whose lines stay under 76 octets. binascii leaves a lone CR as it is, so line
    breaks become LF first.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8")
    if (
        not encode
        and data.isascii()
        and b"\x00" not in data
        and max(map(len, data.split(b"\n"))) <= 998
    ):
        encoding = b"7bit"
    else:
        encoding = b"quoted-printable"
        data = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    data = data.replace(b"\n", CRLF)
    if not data.endswith(CRLF):
        data += CRLF
    head = (
        b"Content-Type: " + content_type.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n"
    )
    return head, data


def tracking_base_url(domain: SendingDomain) -> str:
    """Where a domain's tracked links and pixel point: its own tracking host once it is
    verified and the tracking CNAME passed (a branded host, and the platform's reputation
    kept apart from each sender's), else the platform's BASE_URL."""
    if domain.is_verified and domain.record_state("tracking") == RecordState.PASS:
        return f"https://{domain.tracking_host}"
    return settings.BASE_URL.rstrip("/")


class CampaignMessageBuilder:
    """Builds and signs every recipient's message of one campaign (and its variants).

    Raises BuildError when made for a campaign that cannot be sent as it is: its From
    domain is not a verified sending domain of the workspace, the domain has no active
    DKIM key, or the campaign does not compile. `build` makes no database query.

    `base_url`: where tracked links and the pixel point; by default the sending domain's
    (`tracking_base_url`).
    """

    def __init__(
        self,
        campaign: Campaign,
        *,
        base_url: str | None = None,
        now: Callable[[], datetime] | None = None,
    ):
        self.campaign = campaign
        self._now = now or timezone.now
        workspace = campaign.workspace  # fetched once: every recipient's context reads it
        domain = sending_domain_for_from_address(workspace=workspace, address=campaign.from_email)
        if domain is None:
            raise BuildError(
                f"The From domain is not verified: {campaign.from_email!r} is not on a "
                "verified sending domain of this workspace."
            )
        self.sending_domain = domain
        self.base_url = (base_url or tracking_base_url(domain)).rstrip("/")
        self.domain = domain.domain
        self.return_path_host = domain.return_path_host
        self.signers = [_signer(domain, key) for key in dkim_key_list_signing(domain=domain)]
        if not self.signers:
            raise BuildError(f"{domain.display_name} has no active DKIM key to sign with.")
        self._compiled = self._compile()
        self._variants: dict[int, CampaignMessageBuilder] = {}
        self._prepare_headers()

    def _compile(self, variant: Variant | None = None) -> CompiledMessage:
        # A send uses the layout frozen when it started; before that, the template's own.
        send = CampaignSend.objects.filter(campaign=self.campaign).only("layout_html").first()
        layout = {} if send is None else {"layout": send.layout_html}
        try:
            if variant is None:
                return campaign_compile(self.campaign, **layout)
            return campaign_compile(
                self.campaign, subject=variant.subject, html=variant.html or None, **layout
            )
        except TemplateError as error:
            raise BuildError(f"The campaign does not compile: {error}") from error

    def _prepare_headers(self) -> None:
        """The headers and MIME frame every recipient's message shares, as bytes."""
        campaign, workspace = self.campaign, self.campaign.workspace
        from_address = _address(campaign.from_email, "From address")
        from_name = _clean(campaign.from_name, "From name").strip()
        sender = f"{_phrase(from_name)} <{from_address}>" if from_name else from_address
        self._head_top = _header("From", sender)
        if campaign.reply_to.strip():
            reply_to = _address(campaign.reply_to, "Reply-To address")
            self._head_top += _header("Reply-To", reply_to)

        slug = _SLUG_UNSAFE.sub("-", workspace.slug.lower()).strip("-") or f"w{workspace.pk}"
        list_id = f"campaign-{campaign.pk}.{slug}.{self.domain}"
        list_name = _clean(campaign.name, "campaign name").strip()
        platform = settings.SENDING_FEEDBACK_ID_SENDER or "esp"
        bottom = [
            _header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            _header(
                "List-Id", f"{_phrase(list_name)} <{list_id}>" if list_name else f"<{list_id}>"
            ),
            # Gmail's Feedback Loop format, a:b:c:SenderId: campaign, customer, type, sender.
            _header("Feedback-ID", f"{campaign.pk}:{workspace.pk}:campaign:{platform}"),
            _header("Precedence", "bulk"),
            _header("MIME-Version", "1.0"),
        ]
        # "=_" never occurs in quoted-printable text; a 7bit part is checked for it.
        self._boundary = f"=_{secrets.token_hex(12)}".encode()
        bottom.append(
            b'Content-Type: multipart/alternative; boundary="' + self._boundary + b'"\r\n'
        )
        self._head_bottom = b"".join(bottom)
        self._open = b"--" + self._boundary + CRLF
        self._close = b"--" + self._boundary + b"--\r\n"

    def for_variant(self, variant: Variant | None) -> CampaignMessageBuilder:
        """The builder for an A/B variant's subject and body (itself for None), made once."""
        if variant is None:
            return self
        if variant.campaign_id != self.campaign.pk:
            raise BuildError(f"Variant {variant.label} belongs to another campaign.")
        builder = self._variants.get(variant.pk)
        if builder is None:
            builder = copy.copy(self)
            builder._compiled = self._compile(variant)
            self._variants[variant.pk] = builder
        return builder

    def message_id_make(self) -> str:
        """A new Message-ID on the sending domain: random, so it tells nobody anything."""
        return f"<{secrets.token_hex(16)}@{self.domain}>"

    def build(
        self,
        *,
        delivery_id: int,
        contact: Contact | None,
        variant: Variant | None = None,
        address: str = "",
        message_id: str = "",
    ) -> Envelope:
        """The signed message of one delivery, from its VERP return path to its contact.

        `variant`: the delivery's A/B variant (same as `for_variant(variant).build(…)`).
        `address`: the delivery's address as snapshotted (Delivery.address); by default
        the contact's. `message_id`: to know it before sending (Delivery.message_id); by
        default a new one is made. Raises BuildError when this recipient's message cannot
        be made (no contact any more, merge values that are not plain, a bad address).
        """
        if variant is not None:
            return self.for_variant(variant).build(
                delivery_id=delivery_id, contact=contact, address=address, message_id=message_id
            )
        if contact is None:
            raise BuildError("The delivery's contact no longer exists.")
        context = recipient_context(campaign=self.campaign, contact=contact)
        try:
            rendered = self._compiled.render(context)
        except ContextError as error:
            raise BuildError(f"The contact's merge values cannot be used: {error}") from error
        tracked: dict[str, str] = {}

        def track(url: str) -> str:
            found = tracked.get(url)
            if found is None:
                found = tracked[url] = links.tracked_url(
                    base_url=self.base_url, delivery_id=delivery_id, url=url
                )
            return found

        compliance_base = settings.BASE_URL
        html, text = rendered.html, rendered.text
        if self.campaign.track_clicks:
            html = links.links_rewrite(html, rewrite=track, base_url=compliance_base)
            text = _text_links_rewrite(text, rewrite=track, base_url=compliance_base)
        if self.campaign.track_opens:
            html = links.pixel_add(
                html, src=links.pixel_url(base_url=self.base_url, delivery_id=delivery_id)
            )
        text_head, text_data = _part("text/plain", text)
        html_head, html_data = _part("text/html", _html_ascii(html))
        if self._boundary in text_data or self._boundary in html_data:
            # Only by chance (it is random and made after the merge values were written):
            # quoted-printable never holds "=_".
            text_head, text_data = _part("text/plain", text, encode=True)
            html_head, html_data = _part("text/html", _html_ascii(html), encode=True)
        body = b"".join(
            (self._open, text_head, text_data, self._open, html_head, html_data, self._close)
        )

        recipient = _address(address or contact.email, "recipient's address")
        message_id = message_id or self.message_id_make()
        unsubscribe_mailto = verp.verp_address(
            delivery_id=delivery_id, local=verp.UNSUBSCRIBE, domain=self.return_path_host
        )
        headers = b"".join(
            (
                self._head_top,
                _header("To", recipient),
                _header("Subject", _unstructured(rendered.subject)),
                _header("Date", format_datetime(self._now())),
                _header("Message-ID", message_id),
                _header(
                    "List-Unsubscribe",
                    f"<{context['unsubscribe_url']}>, <mailto:{unsubscribe_mailto}>",
                ),
                self._head_bottom,
            )
        )
        body_hash = PreparedSigner.body_hash(body)
        # Each signature goes on top of the last: Ed25519 above RSA. Neither signs another
        # DKIM-Signature, so both are made over the same header block.
        canonical = PreparedSigner.headers_canonical(headers)
        signatures = [
            signer.sign_canonical(canonical, body_hash=body_hash) for signer in self.signers
        ]
        message = b"".join((*reversed(signatures), headers, CRLF, body))
        return Envelope(
            delivery_id=delivery_id,
            mail_from=verp.verp_address(
                delivery_id=delivery_id, local=verp.BOUNCES, domain=self.return_path_host
            ),
            recipient=recipient,
            message=message,
            message_id=message_id,
        )


def _text_links_rewrite(text: str, *, rewrite: Callable[[str], str], base_url: str) -> str:
    """Every trackable http(s) URL of the text part pointed at rewrite(target), as in the
    HTML; trailing punctuation and an unbalanced ")" stay outside the URL.

    The search is for the literal "://", the scheme read back from there: a pattern that
    starts with a literal is found by a fast scan, `https?://` with IGNORECASE is not.
    """
    pieces, done = [], 0
    for match in _TEXT_URL.finditer(text):
        start = match.start()
        if text[max(start - 5, 0) : start].lower() == "https":
            start -= 5
        elif text[max(start - 4, 0) : start].lower() == "http":
            start -= 4
        else:
            continue
        url = text[start : match.end()]
        while url and (
            url[-1] in _URL_TRAIL or (url[-1] == ")" and url.count(")") > url.count("("))
        ):
            url = url[:-1]
        if not links.is_trackable(url, base_url=base_url):
            continue
        pieces += [text[done:start], rewrite(url)]
        done = start + len(url)
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _signer(domain, key) -> PreparedSigner:
    """A key that no longer loads (corrupted, sealed with a lost FIELD_ENCRYPTION_KEY) stops
    the campaign with its name, rather than every message failing one by one."""
    try:
        return PreparedSigner(
            domain=domain.domain,
            selector=key.selector,
            private_key=key.private_key,
            algorithm=key.algorithm,
        )
    except (ValueError, TypeError) as error:
        raise BuildError(
            f"The DKIM key {key.selector} of {domain.display_name} cannot be loaded ({error}); "
            "rotate it on the domain's page."
        ) from error


RENDER_DELIVERY_ID = 2**53  # beyond any bigserial a platform will reach


def campaign_render_bytes(campaign: Campaign, contact: Contact) -> bytes | None:
    """`campaign_render`'s bytes from the send path's own builder: tracked links, VERP and
    DKIM as the recipient would get them, with the Return-Path their MTA would add. The
    contact's delivery names the links when the campaign has one; before the send they name
    RENDER_DELIVERY_ID, which no delivery has (its clicks and bounces find nothing).
    None when the campaign cannot go through the pipeline (its From domain not verified)."""
    try:
        builder = CampaignMessageBuilder(campaign)
    except BuildError:
        return None
    delivery = Delivery.objects.filter(campaign=campaign, contact=contact).first()
    envelope = builder.build(
        delivery_id=delivery.pk if delivery else RENDER_DELIVERY_ID,
        contact=contact,
        variant=delivery.variant if delivery else None,
    )
    return f"Return-Path: <{envelope.mail_from}>\r\n".encode() + envelope.message
