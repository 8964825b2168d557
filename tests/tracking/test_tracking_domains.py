"""Custom tracking domains: a campaign's tracked links and open pixel point at its sending
domain's tracking host once that domain is verified and its tracking CNAME passed, else at
BASE_URL; unsubscribe, preferences and web version links stay on BASE_URL. Sent through
the real pipeline to an SMTP server on loopback."""

import re
from html import unescape
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from sending import links
from sending.message import campaign_render_bytes, tracking_base_url
from sending.models import Delivery, SendingDomain
from sending.pipeline import campaigns_start_due, chunk_send
from sending.services.domains import sending_domain_add, sending_domain_check
from sending.transports import transports_close
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)
from tests.sending.conftest import dns_server, publish  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

BASE_URL = "https://esp.example"
HTML = (
    '<p>Hi <a href="https://shop.example/sale">Sale</a></p>'
    '<p><a href="{{ web_version_url }}">View in browser</a> '
    '<a href="{{ preferences_url }}">Preferences</a> '
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
)
TEXT = "Sale: https://shop.example/sale\nUnsubscribe: {{ unsubscribe_url }}\n"


@pytest.fixture
def sink(settings, smtp_sink):
    settings.BASE_URL = BASE_URL
    settings.SENDING_TRANSPORT = "smtp"
    settings.SENDING_SMTP_HOST, settings.SENDING_SMTP_PORT = smtp_sink.host, smtp_sink.port
    settings.SENDING_SMTP_SECURITY = "none"
    settings.SENDING_SMTP_USERNAME = ""
    transports_close()
    try:
        yield smtp_sink
    finally:
        transports_close()


def _campaign(dns_server, name: str, *, skip=()) -> Campaign:  # noqa: F811
    """A scheduled campaign of a new workspace on the verified domain `name`, to one contact."""
    workspace = WorkspaceFactory()
    domain = sending_domain_add(workspace=workspace, domain=name, acting_user=None)
    publish(dns_server, domain, skip=skip)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    SendingDomain.objects.filter(pk=domain.pk).update(is_warmed_up=True)
    subscription = SubscriptionFactory(
        contact=ContactFactory(workspace=workspace, email=f"reader@{name}.test"),
        contact_list=ContactListFactory(workspace=workspace),
    )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name=name,
        subject="Hi",
        from_email=f"hello@{name}",
        html=HTML,
        text=TEXT,
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    campaign.include_lists.add(subscription.contact_list)
    return campaign


def _sent_message(sink, campaign: Campaign):
    while chunk_send(campaign_id=campaign.pk) is not None:
        pass
    delivery = Delivery.objects.get(campaign=campaign)
    [message] = sink.to(delivery.address)
    return delivery, message


def _parts(message) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def _assert_tracked_on(base: str, delivery: Delivery, message) -> None:
    text, html = _parts(message)
    hrefs = [unescape(href) for href in re.findall(r'href="([^"]*)"', html)]
    tracked = [href for href in hrefs if "/c/" in href]
    assert len(tracked) == 1
    assert tracked[0].startswith(f"{base}/c/")
    assert links.click_read(tracked[0].removeprefix(f"{base}/c/")) == (
        delivery.pk,
        "https://shop.example/sale",
    )
    [text_link] = re.findall(r"Sale: (\S+)", text)
    assert text_link == tracked[0]
    [pixel] = re.findall(r'<img src="([^"]+)" width="1" height="1"', html)
    assert pixel.startswith(f"{base}/o/")
    assert links.open_read(pixel.removeprefix(f"{base}/o/").removesuffix(".gif")) == delivery.pk
    # Compliance links never move to the tracking host, and are never tracked.
    compliance = [href for href in hrefs if "/c/" not in href]
    assert sorted(urlsplit(href).path[:3] for href in compliance) == ["/p/", "/u/", "/v/"]
    assert all(href.startswith(f"{BASE_URL}/") for href in compliance)
    assert f"<{BASE_URL}/u/" in message["List-Unsubscribe"]


def test_links_and_pixel_use_the_domain_tracking_host_once_its_cname_passed(
    dns_server,  # noqa: F811
    sink,
):
    branded = _campaign(dns_server, "news.branded.example")
    plain = _campaign(dns_server, "news.plain.example", skip=("tracking",))
    assert SendingDomain.objects.get(domain="news.plain.example").record_state("tracking") == (
        "missing"
    )
    assert sorted(campaigns_start_due()) == sorted([branded.pk, plain.pk])

    delivery, message = _sent_message(sink, branded)
    _assert_tracked_on("https://links.news.branded.example", delivery, message)

    delivery, message = _sent_message(sink, plain)
    _assert_tracked_on(BASE_URL, delivery, message)


def test_campaign_render_shows_the_links_the_send_path_writes(dns_server, settings):  # noqa: F811
    settings.BASE_URL = BASE_URL
    campaign = _campaign(dns_server, "news.branded.example")
    contact = campaign.workspace.contact_set.get()
    raw = campaign_render_bytes(campaign, contact).decode()
    assert "https://links.news.branded.example/c/" in raw
    assert "https://links.news.branded.example/o/" in raw
    assert f"{BASE_URL}/c/" not in raw


@pytest.mark.parametrize(
    ("status", "tracking_state", "expected"),
    [
        ("verified", "pass", "https://links.news.example"),
        ("verified", "missing", BASE_URL),
        ("verified", "mismatch", BASE_URL),
        ("verified", None, BASE_URL),  # never checked
        ("failing", "pass", BASE_URL),
        ("pending", "pass", BASE_URL),
    ],
)
def test_tracking_base_url_needs_a_verified_domain_and_a_passed_cname(
    settings, status, tracking_state, expected
):
    settings.BASE_URL = BASE_URL + "/"
    states = {} if tracking_state is None else {"tracking": {"state": tracking_state}}
    domain = SendingDomain(domain="news.example", status=status, record_states=states)
    assert tracking_base_url(domain) == expected
