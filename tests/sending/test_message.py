"""The per-recipient message of the send path: headers, tracked links and pixel, VERP, MIME
written by hand with CRLF, DKIM signatures that dkimpy verifies through the loopback DNS
server."""

import email
import email.policy
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html import unescape
from urllib.parse import quote, urlsplit

import dkim as dkimpy
import pytest
from django.conf import settings

from campaigns import services as campaign_services
from campaigns.models import Variant
from campaigns.starters import starter_get
from compliance.tokens import Purpose, token_read
from sending import links, verp
from sending.message import BuildError, CampaignMessageBuilder
from sending.models import SendingDomain
from sending.services.domains import dkim_key_add_ed25519, sending_domain_add, sending_domain_check
from tests.factories import ContactFactory
from tests.sending.conftest import dkim_dnsfunc, publish

pytestmark = pytest.mark.django_db

DOMAIN = "news.example.com"
BODY = (
    '<h1>Hello {{ first_name|default:"there" }},</h1>\n'
    '<p><a href="https://shop.example/sale?utm=1&amp;x=2">Autumn sale</a></p>\n'
    '<p><a href="https://shop.example/account?email={{ email }}">Your account</a></p>\n'
    '<p><a href="{{ web_version_url }}">View in your browser</a></p>\n'
    '<p><a href="mailto:help@shop.example">Write to us</a></p>'
)


@pytest.fixture
def domain(workspace, dns_server) -> SendingDomain:
    """A verified domain signing with RSA and Ed25519, its records in the loopback DNS."""
    domain = sending_domain_add(workspace=workspace, domain=DOMAIN, acting_user=None)
    dkim_key_add_ed25519(domain=domain, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    return domain


@pytest.fixture
def campaign(workspace, domain):
    campaign = campaign_services.campaign_create(
        workspace=workspace,
        name="Autumn news",
        starter=starter_get("newsletter"),
        acting_user=None,
    )
    return campaign_services.campaign_update(
        campaign=campaign,
        acting_user=None,
        subject="News for {{ first_name }}",
        from_name="Zoë's Shop",
        from_email=f"hello@{DOMAIN}",
        reply_to="help@shop.example",
        html=BODY,
    )


@pytest.fixture
def contact(workspace):
    return ContactFactory(workspace=workspace, email="ada@example.org", first_name="Ada")


def _builder(campaign, **options) -> CampaignMessageBuilder:
    return CampaignMessageBuilder(campaign, base_url=settings.BASE_URL, **options)


def _verifies(raw: bytes, idx: int) -> bool:
    """dkimpy's verdict on the signature at idx (it raises for a body hash mismatch)."""
    try:
        return dkimpy.DKIM(raw).verify(idx=idx, dnsfunc=dkim_dnsfunc)
    except dkimpy.DKIMException:
        return False


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def _parts(message) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def _html_urls(html: str) -> list[str]:
    return [unescape(m.group(1)) for m in re.finditer(r'href="([^"]*)"', html)]


def _text_urls(text: str) -> list[str]:
    return re.findall(r"https?://[^\s()<>\"]+", text)


def _urls(text: str, html: str) -> list[str]:
    return _html_urls(html) + _text_urls(text)


def _click(url: str) -> tuple[int, str] | None:
    path = urlsplit(url).path
    if not (url.startswith(settings.BASE_URL) and path.startswith("/c/")):
        return None
    return links.click_read(path.removeprefix("/c/"))


def test_message_has_every_header_with_its_value(campaign, contact, domain, workspace):
    clock = datetime(2024, 10, 1, 10, 0, tzinfo=UTC)
    envelope = _builder(campaign, now=lambda: clock).build(delivery_id=4242, contact=contact)
    message = _parse(envelope.message)

    assert message["From"].addresses[0].display_name == "Zoë's Shop"
    assert message["From"].addresses[0].addr_spec == f"hello@{DOMAIN}"
    assert message["To"] == "ada@example.org"
    assert message["Subject"] == "News for Ada"
    assert parsedate_to_datetime(message["Date"]) == clock
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(DOMAIN)}>", message["Message-ID"])
    assert message["MIME-Version"] == "1.0"
    assert message["Reply-To"] == "help@shop.example"
    assert message["Precedence"] == "bulk"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Feedback-ID"] == f"{campaign.pk}:{workspace.pk}:campaign:esp"
    assert message["List-Id"] == (f"Autumn news <campaign-{campaign.pk}.{workspace.slug}.{DOMAIN}>")
    assert "Return-Path" not in message  # the receiving MTA writes it from MAIL FROM

    https_link, mailto_link = re.fullmatch(r"<(.+)>, <(.+)>", message["List-Unsubscribe"]).groups()
    claim = token_read(urlsplit(https_link).path.removeprefix("/u/"), purpose=Purpose.UNSUBSCRIBE)
    assert https_link.startswith(settings.BASE_URL + "/u/")
    assert (claim.contact_id, claim.campaign_id) == (contact.pk, campaign.pk)
    mailbox = mailto_link.removeprefix("mailto:")
    assert mailbox.startswith("unsubscribe+")
    assert mailbox.endswith(f"@{domain.return_path_host}")
    assert verp.verp_read(mailbox, local=verp.UNSUBSCRIBE) == 4242

    assert message.get_content_type() == "multipart/alternative"
    kinds = [part.get_content_type() for part in message.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    for part in message.iter_parts():
        assert part.get_content_charset() == "utf-8"
    text_part, html_part = message.iter_parts()
    # The layout's footer has a "·": the text part is quoted-printable, the HTML part
    # writes it as a character reference and needs no encoding.
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part["Content-Transfer-Encoding"] == "7bit"
    assert "&#183;" in html_part.get_content()
    assert "·" in text_part.get_content()
    assert message.defects == []


def test_message_is_crlf_only_with_lines_under_the_limit(campaign, contact):
    raw = _builder(campaign).build(delivery_id=1, contact=contact).message

    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.endswith(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_non_ascii_html_is_written_with_character_references_outside_style_blocks(
    campaign, contact
):
    campaign.html = "<p>Grüße, {{ first_name }} 🎉</p>"
    _, html = _parts(_parse(_builder(campaign).build(delivery_id=2, contact=contact).message))
    assert "<p>Gr&#252;&#223;e, Ada &#127881;</p>" in html
    assert unescape(html).count("Grüße, Ada 🎉") == 1

    # CSS reads no character references: a <style> block with a non-ASCII character
    # leaves the part in UTF-8, quoted-printable.
    campaign.template.html = campaign.template.html.replace(
        "<style>", '<style>\n  @media screen { .brand { font-family: "微软雅黑"; } }'
    )
    message = _parse(_builder(campaign).build(delivery_id=3, contact=contact).message)
    html_part = list(message.iter_parts())[1]
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert '"微软雅黑"' in html_part.get_content()
    assert "Grüße, Ada 🎉" in html_part.get_content()


def test_parts_with_non_ascii_or_overlong_lines_are_quoted_printable(campaign, contact, workspace):
    long_line = "<p>" + "word " * 300 + "</p>"  # 1,507 characters on one line
    campaign.html = BODY + "\n" + long_line + "\r\n<p>Grüße aus Köln,\rZoë</p>"
    envelope = _builder(campaign).build(delivery_id=2, contact=contact)
    message = _parse(envelope.message)
    text, html = _parts(message)

    for part in message.iter_parts():
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert long_line in html
    assert "Grüße aus Köln,\r\nZoë" in unescape(html)  # a lone CR became a line break
    assert "Grüße aus Köln" in text
    body = envelope.message.partition(b"\r\n\r\n")[2]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert b"\n" not in envelope.message.replace(b"\r\n", b"")
    assert b"\r" not in envelope.message.replace(b"\r\n", b"")
    assert _verifies(envelope.message, 0)
    assert _verifies(envelope.message, 1)


def test_every_web_link_is_tracked_to_the_delivery_and_each_recipients_own_target(
    campaign, contact, workspace
):
    other = ContactFactory(workspace=workspace, email="bob+news@example.net", first_name="Bob")
    builder = _builder(campaign)
    for delivery_id, recipient in ((7, contact), (8, other)):
        text, html = _parts(
            _parse(builder.build(delivery_id=delivery_id, contact=recipient).message)
        )
        expected = {
            "https://shop.example/sale?utm=1&x=2",
            f"https://shop.example/account?email={quote(recipient.email, safe='')}",
        }
        for part_urls in (_text_urls(text), _html_urls(html)):
            targets = set()
            for url in part_urls:
                if not url.startswith(("http://", "https://")):
                    continue
                clicked = _click(url)
                if clicked is None:  # only the compliance pages stay as they are
                    assert urlsplit(url).path[:3] in {"/u/", "/p/", "/v/"}, url
                    continue
                assert clicked[0] == delivery_id
                targets.add(clicked[1])
            assert targets == expected
        assert 'href="mailto:help@shop.example"' in html


def test_urls_of_a_given_text_part_are_tracked_without_their_punctuation(campaign, contact):
    campaign.text = (
        "Hi {{ first_name }}, see (https://shop.example/a_(b)). Also HTTPS://Shop.example/UP,\n"
        "and https://shop.example/end. Write to mailto:help@shop.example or ftp://old.example\n"
        "Unsubscribe: {{ unsubscribe_url }}\n"
    )
    text, _ = _parts(_parse(_builder(campaign).build(delivery_id=6, contact=contact).message))
    tracked = re.findall(rf"{re.escape(settings.BASE_URL)}/c/[\w-]+\.[\w-]+\.[\w-]+", text)

    assert [_click(url) for url in tracked] == [
        (6, "https://shop.example/a_(b)"),
        (6, "HTTPS://Shop.example/UP"),
        (6, "https://shop.example/end"),
    ]
    assert f"see ({tracked[0]})." in text
    assert f"{tracked[1]},\n" in text.replace("\r\n", "\n")
    assert "mailto:help@shop.example or ftp://old.example" in text
    assert f"Unsubscribe: {settings.BASE_URL}/u/" in text


def test_compliance_links_are_untracked_tokens_of_the_contact(campaign, contact, workspace):
    text, html = _parts(_parse(_builder(campaign).build(delivery_id=3, contact=contact).message))
    purposes = {"/u/": Purpose.UNSUBSCRIBE, "/p/": Purpose.PREFERENCES, "/v/": Purpose.WEB_VERSION}
    seen = set()
    for url in _urls(text, html):
        path = urlsplit(url).path
        if url.startswith(settings.BASE_URL) and path[:3] in purposes:
            claim = token_read(path[3:], purpose=purposes[path[:3]])
            assert claim is not None, url
            assert (claim.workspace_id, claim.contact_id) == (workspace.pk, contact.pk)
            seen.add(path[:3])
    assert seen == set(purposes)


def test_open_pixel_names_the_delivery(campaign, contact):
    _, html = _parts(_parse(_builder(campaign).build(delivery_id=99, contact=contact).message))
    pixels = re.findall(r'<img src="([^"]+)" width="1" height="1"', html)
    assert len(pixels) == 1
    path = urlsplit(pixels[0]).path
    assert pixels[0].startswith(settings.BASE_URL + "/o/")
    assert links.open_read(path.removeprefix("/o/").removesuffix(".gif")) == 99
    assert html.index(pixels[0]) < html.lower().rindex("</body>")


def test_rsa_and_ed25519_signatures_verify_and_cover_the_one_click_headers(campaign, contact):
    raw = _builder(campaign).build(delivery_id=5, contact=contact).message
    assert raw.startswith(b"DKIM-Signature:")

    verifier = dkimpy.DKIM(raw)
    assert verifier.verify(idx=0, dnsfunc=dkim_dnsfunc)  # Ed25519, added last, on top
    assert verifier.signature_fields[b"a"] == b"ed25519-sha256"
    assert verifier.verify(idx=1, dnsfunc=dkim_dnsfunc)
    tags = verifier.signature_fields
    assert tags[b"a"] == b"rsa-sha256"
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == DOMAIN.encode()
    assert b"l" not in tags
    assert {b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"} <= set(
        verifier.include_headers
    )

    tampered = raw.replace(b"Autumn sale", b"Winter sale")
    assert tampered != raw
    assert not _verifies(tampered, 0)
    assert not _verifies(tampered, 1)


def test_envelope_returns_bounces_to_the_delivery_verp_address(campaign, contact, domain):
    envelope = _builder(campaign).build(delivery_id=123456, contact=contact)

    assert envelope.delivery_id == 123456
    assert envelope.recipient == "ada@example.org"
    assert envelope.mail_from.startswith("bounces+")
    assert envelope.mail_from.endswith(f"@{domain.return_path_host}")
    assert verp.verp_read(envelope.mail_from, local=verp.BOUNCES) == 123456


def test_eai_recipient_is_written_in_utf8_never_as_an_encoded_word(campaign, workspace):
    reader = ContactFactory(workspace=workspace, email="zoë@example.org", first_name="Zoë")
    envelope = _builder(campaign).build(delivery_id=11, contact=reader)

    assert b"\r\nTo: zo\xc3\xab@example.org\r\n" in envelope.message
    assert b"=?" not in envelope.message.split(b"\r\nTo: ")[1].split(b"\r\n")[0]
    assert envelope.recipient == "zoë@example.org"
    # The stdlib reads 8-bit headers from bytes as surrogates: parse the UTF-8 text.
    message = email.message_from_string(envelope.message.decode(), policy=email.policy.SMTPUTF8)
    assert message["To"].addresses[0].addr_spec == "zoë@example.org"
    assert message["Subject"] == "News for Zoë"  # a non-ASCII subject is RFC 2047-encoded
    assert b"Subject: =?utf-8?b?" in envelope.message
    assert dkimpy.DKIM(envelope.message).verify(idx=1, dnsfunc=dkim_dnsfunc)


def test_variant_gets_its_own_subject_and_body(campaign, contact, workspace):
    variant = Variant.objects.create(
        workspace=workspace,
        campaign=campaign,
        label="B",
        subject="Only today, {{ first_name }}",
        html='<p>Variant B: <a href="https://shop.example/b">B offer</a></p>',
    )
    builder = _builder(campaign)
    assert builder.for_variant(None) is builder
    assert builder.for_variant(variant) is builder.for_variant(variant)  # compiled once

    envelope = builder.build(delivery_id=21, contact=contact, variant=variant)
    message = _parse(envelope.message)
    text, html = _parts(message)
    assert message["Subject"] == "Only today, Ada"
    assert "Variant B" in html
    assert "Autumn sale" not in html
    assert {_click(url)[1] for url in _urls(text, html) if _click(url)} == {
        "https://shop.example/b"
    }
    assert "unsubscribe" in html.lower()  # the layout's footer is still there
    # The campaign's own messages are unchanged.
    plain = _parse(builder.build(delivery_id=22, contact=contact).message)
    assert plain["Subject"] == "News for Ada"


def test_a_recipient_whose_message_cannot_be_made_is_a_build_error(campaign, contact):
    builder = _builder(campaign)
    with pytest.raises(BuildError, match="no longer exists"):
        builder.build(delivery_id=1, contact=None)
    contact.attributes = {"plan": object()}
    with pytest.raises(BuildError, match="merge values"):
        builder.build(delivery_id=2, contact=contact)


def test_the_snapshotted_address_is_the_recipient(campaign, contact):
    envelope = _builder(campaign).build(
        delivery_id=3, contact=contact, address="ada.lovelace@example.org"
    )
    assert envelope.recipient == "ada.lovelace@example.org"
    assert _parse(envelope.message)["To"] == "ada.lovelace@example.org"


def test_unverified_from_domain_is_refused_with_a_clear_error(campaign):
    campaign.from_email = "hello@elsewhere.example"
    with pytest.raises(BuildError, match="From domain is not verified"):
        _builder(campaign)


def test_long_and_non_ascii_header_values_fold_and_read_back(campaign, contact, workspace):
    campaign.name = 'Herbst "Spezial": Äpfel, Birnen und ' + "sehr viele andere Früchte " * 4
    campaign.from_name = "Obsthof Müller & Söhne, seit 1899 in der Altstadt von Überlingen"
    campaign.subject = "Ihre Auswahl: " + "{{ first_name }} " * 10 + "\u2013 nur heute"
    envelope = _builder(campaign).build(delivery_id=31, contact=contact)
    message = _parse(envelope.message)
    head = envelope.message.partition(b"\r\n\r\n")[0]

    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert message["Subject"] == "Ihre Auswahl: " + "Ada " * 10 + "\u2013 nur heute"
    assert message["From"].addresses[0].display_name == campaign.from_name
    assert message["List-Id"].startswith('Herbst "Spezial": Äpfel')
    assert message.defects == []
    assert dkimpy.DKIM(envelope.message).verify(idx=1, dnsfunc=dkim_dnsfunc)


def test_build_makes_no_query_and_takes_a_given_message_id(
    campaign, contact, django_assert_num_queries
):
    builder = _builder(campaign)
    message_id = builder.message_id_make()
    with django_assert_num_queries(0):
        envelope = builder.build(delivery_id=41, contact=contact, message_id=message_id)
    assert _parse(envelope.message)["Message-ID"] == message_id
    assert builder.message_id_make() != message_id
