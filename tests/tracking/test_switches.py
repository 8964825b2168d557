"""A campaign's tracking switches: track_opens off leaves out the pixel, track_clicks off
leaves every link as written (HTML and text), web_version off renders the web version link
empty and its page answers 404. The editor shows and saves the three."""

import re
from email import message_from_bytes, policy
from html import unescape
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from accounts.models import Role
from campaigns import services as campaign_services
from campaigns.models import Campaign
from campaigns.starters import STARTERS
from compliance.tokens import web_version_url
from sending import links
from sending.message import CampaignMessageBuilder
from sending.models import SendingDomain
from sending.services.domains import sending_domain_add, sending_domain_check
from tests.factories import ContactFactory
from tests.sending.conftest import dns_server, publish  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

DOMAIN = "news.switch.example"
HTML = (
    '<p><a href="https://shop.example/sale?a=1&amp;b=2">Sale</a></p>'
    '<p><a href="{{ web_version_url }}">View in browser</a> '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
)
TEXT = "Sale: https://shop.example/sale?a=1&b=2\nWeb: [{{ web_version_url }}]\n"


@pytest.fixture
def campaign(workspace, dns_server) -> Campaign:  # noqa: F811
    domain = sending_domain_add(workspace=workspace, domain=DOMAIN, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    return Campaign.objects.create(
        workspace=workspace,
        name="Switches",
        subject="Hi",
        from_email=f"hello@{DOMAIN}",
        html=HTML,
        text=TEXT,
    )


@pytest.fixture
def contact(workspace):
    return ContactFactory(workspace=workspace, email="ada@example.org")


def _parts(campaign: Campaign, contact) -> tuple[str, str]:
    raw = CampaignMessageBuilder(campaign).build(delivery_id=77, contact=contact).message
    message = message_from_bytes(raw, policy=policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def _hrefs(html: str) -> list[str]:
    return [unescape(href) for href in re.findall(r'href="([^"]*)"', html)]


def _pixels(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)" width="1" height="1"', html)


def test_all_switches_on_track_links_and_opens(campaign, contact):
    text, html = _parts(campaign, contact)
    [sale, web, _unsubscribe] = _hrefs(html)
    assert "/c/" in sale
    assert links.click_read(sale.rsplit("/c/", 1)[1]) == (77, "https://shop.example/sale?a=1&b=2")
    assert "/v/" in web
    assert len(_pixels(html)) == 1
    assert "https://shop.example/sale" not in text


def test_track_opens_off_leaves_out_the_pixel_only(campaign, contact):
    campaign.track_opens = False
    text, html = _parts(campaign, contact)
    assert _pixels(html) == []
    assert "/o/" not in html
    assert "/c/" in _hrefs(html)[0]
    assert "/c/" in text


def test_track_clicks_off_leaves_links_as_written_in_both_parts(campaign, contact):
    campaign.track_clicks = False
    text, html = _parts(campaign, contact)
    assert _hrefs(html)[0] == "https://shop.example/sale?a=1&b=2"
    assert "Sale: https://shop.example/sale?a=1&b=2" in text.splitlines()
    assert "/c/" not in html
    assert "/c/" not in text
    assert len(_pixels(html)) == 1  # opens are still tracked


def test_web_version_off_renders_the_link_empty(campaign, contact):
    campaign.web_version = False
    text, html = _parts(campaign, contact)
    [_sale, web, unsubscribe] = _hrefs(html)
    assert web == ""
    assert "/u/" in unsubscribe
    assert "Web: []" in text
    assert "/v/" not in html + text


def test_web_version_page_answers_404_when_turned_off(campaign, contact, client):
    path = urlsplit(
        web_version_url(
            workspace_id=campaign.workspace_id, contact_id=contact.pk, campaign_id=campaign.pk
        )
    ).path
    shown = client.get(path)
    assert shown.status_code == 200
    assert b"Sale" in shown.content

    Campaign.objects.filter(pk=campaign.pk).update(web_version=False)
    hidden = client.get(path)
    assert hidden.status_code == 404
    assert b"Sale" not in hidden.content


# --- the editor ---------------------------------------------------------------------------


def _editor_url(campaign: Campaign) -> str:
    return reverse(
        "campaigns:campaign_edit",
        kwargs={"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk},
    )


def _draft(workspace) -> Campaign:
    return campaign_services.campaign_create(
        workspace=workspace, name="Draft", starter=STARTERS[0], acting_user=None
    )


def _form(**overrides) -> dict:
    return {
        "subject": "Hello",
        "preheader": "",
        "from_name": "Shop",
        "from_email": "news@shop.example",
        "reply_to": "",
        "html": "<p>Hi</p>",
        "text": "",
        **overrides,
    }


def test_editor_shows_the_three_switches_in_a_tracking_fieldset(workspace, member_client):
    campaign = _draft(workspace)
    page = member_client(workspace, Role.EDITOR).get(_editor_url(campaign)).content.decode()
    fieldset = re.search(r"<fieldset[^>]*>\s*<legend>Tracking</legend>(.*?)</fieldset>", page, re.S)
    assert fieldset
    for name in ("track_opens", "track_clicks", "web_version"):
        assert re.search(rf'<input type="checkbox" name="{name}"[^>]*checked', fieldset.group(1))
    assert "opens are estimates" in fieldset.group(1)


def test_editor_saves_the_switches(workspace, member_client):
    campaign = _draft(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _editor_url(campaign), _form(tracking_shown="1", track_opens="on", web_version="on")
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.track_opens, campaign.track_clicks, campaign.web_version) == (
        True,
        False,
        True,
    )
    client.post(_editor_url(campaign), _form(tracking_shown="1"))
    campaign.refresh_from_db()
    assert (campaign.track_opens, campaign.track_clicks, campaign.web_version) == (
        False,
        False,
        False,
    )


def test_a_post_without_the_fieldset_keeps_the_switches(workspace, member_client):
    campaign = _draft(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(track_clicks=False)
    response = member_client(workspace, Role.EDITOR).post(
        _editor_url(campaign), _form(subject="Changed")
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.subject == "Changed"
    assert (campaign.track_opens, campaign.track_clicks, campaign.web_version) == (
        True,
        False,
        True,
    )


def test_viewer_sees_the_switches_disabled(workspace, member_client):
    campaign = _draft(workspace)
    page = member_client(workspace, Role.VIEWER).get(_editor_url(campaign)).content.decode()
    box = re.search(r'<input type="checkbox" name="track_opens"[^>]*>', page).group(0)
    assert "disabled" in box
