"""`campaign_render` shows a campaign on a verified domain exactly as the send path builds
it: tracked links, VERP Return-Path, DKIM signature that verifies."""

import re

import dkim as dkimpy
import pytest
from django.core.management import call_command

from campaigns.models import Campaign
from campaigns.outgoing import campaign_message_bytes
from sending import links
from sending.services.domains import sending_domain_add, sending_domain_check
from tests.factories import ContactFactory, WorkspaceFactory
from tests.sending.conftest import dkim_dnsfunc, publish

pytestmark = pytest.mark.django_db


def test_render_of_a_verified_campaign_is_the_signed_wire_message(dns_server, settings, tmp_path):
    settings.BASE_URL = "https://esp.example"
    workspace = WorkspaceFactory(postal_address="1 Harbour Street")
    domain = sending_domain_add(workspace=workspace, domain="news.shop.example", acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    ContactFactory(workspace=workspace, email="ada@example.org", first_name="Ada")
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring",
        subject="Hi {{ first_name }}",
        from_email="hello@news.shop.example",
        html='<p>Hi {{ first_name }} <a href="https://shop.example/">Shop</a></p>'
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>',
    )
    target = tmp_path / "spring.eml"
    call_command("campaign_render", campaign.pk, contact="ada@example.org", out=str(target))

    raw = target.read_bytes()
    assert raw.startswith(b"Return-Path: <bounces+")
    assert dkimpy.verify(raw.split(b"\r\n", 1)[1], dnsfunc=dkim_dnsfunc)
    tracked = re.findall(rb"https://links\.news\.shop\.example/c/([A-Za-z0-9._-]+)", raw)
    assert tracked
    assert links.click_read(tracked[0].decode())[1] == "https://shop.example/"


def test_render_of_an_unverified_campaign_falls_back_to_the_unsigned_message(settings):
    workspace = WorkspaceFactory(postal_address="1 Harbour Street")
    contact = ContactFactory(workspace=workspace, email="ada@example.org")
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring",
        subject="Hi",
        from_email="hello@unverified.example",
        html='<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    )
    raw = campaign_message_bytes(campaign=campaign, contact=contact)
    assert b"DKIM-Signature" not in raw
    assert b"List-Unsubscribe" in raw
