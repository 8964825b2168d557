"""The public web version of a campaign: /v/<token>, the email as the contact received it."""

import html
import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Workspace
from campaigns import services
from campaigns.models import Campaign
from campaigns.starters import starter_get
from compliance.gdpr import gdpr_erase
from compliance.tokens import (
    Purpose,
    token_make,
    token_read,
    unsubscribe_token,
    web_version_url,
)
from tests.factories import ContactFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

BODY = (
    "<p>Hi {{ first_name }} {{ last_name }} on the {{ attributes.plan }} plan,"
    ' dear {{ attributes.nickname|default:"friend" }}.</p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    ' <a href="{{ preferences_url }}">Preferences</a>'
    ' <a href="{{ web_version_url }}">View in browser</a></p>'
)


def _campaign(workspace, **fields) -> Campaign:
    campaign = services.campaign_create(
        workspace=workspace, name="Spring sale", starter=starter_get("plain"), acting_user=None
    )
    services.campaign_update(
        campaign=campaign,
        acting_user=None,
        **{
            "subject": "Hello {{ first_name }}",
            "from_name": "Shop",
            "from_email": "news@shop.example",
            "html": BODY,
            **fields,
        },
    )
    return campaign


def _path(campaign, contact) -> str:
    url = web_version_url(
        workspace_id=campaign.workspace_id, contact_id=contact.pk, campaign_id=campaign.pk
    )
    return urlsplit(url).path


@pytest.fixture
def contact(workspace):
    return ContactFactory(
        workspace=workspace,
        first_name="Ada",
        last_name="Lovelace",
        attributes={"plan": "Gold"},
    )


def _links(content: bytes) -> dict[str, str]:
    """The page's links by their text."""
    found = re.findall(r'<a [^>]*href="([^"]*)"[^>]*>([^<]*)</a>', content.decode())
    return {text: html.unescape(href) for href, text in found}


def _token(url: str, prefix: str) -> str:
    path = urlsplit(url).path
    assert path.startswith(prefix)
    return path.removeprefix(prefix)


def test_page_is_the_email_with_the_contacts_merge_values(workspace, contact):
    campaign = _campaign(workspace)
    response = Client().get(_path(campaign, contact))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert "Hi Ada Lovelace on the Gold plan, dear friend." in page
    assert "1 Test Street" in page  # the layout's footer: the email, not our layout
    assert "app.css" not in page


def test_links_are_tokens_of_that_contact(workspace, contact):
    campaign = _campaign(workspace)
    links = _links(Client().get(_path(campaign, contact)).content)

    unsubscribe = token_read(_token(links["Unsubscribe"], "/u/"), purpose=Purpose.UNSUBSCRIBE)
    assert (unsubscribe.workspace_id, unsubscribe.contact_id, unsubscribe.campaign_id) == (
        workspace.pk,
        contact.pk,
        campaign.pk,
    )
    preferences = token_read(_token(links["Preferences"], "/p/"), purpose=Purpose.PREFERENCES)
    assert (preferences.workspace_id, preferences.contact_id) == (workspace.pk, contact.pk)
    assert links["View in browser"].startswith(settings.BASE_URL + "/v/")
    assert Client().get(urlsplit(links["Unsubscribe"]).path).status_code == 200


def test_page_headers_keep_it_private_and_forbid_scripts(workspace, contact):
    response = Client().get(_path(_campaign(workspace), contact))
    directives = [
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    ]
    policy = dict(directives)
    assert policy["default-src"] == "'none'"
    assert "script-src" not in policy
    assert policy["style-src"] == "'unsafe-inline'"
    base = urlsplit(settings.BASE_URL)
    assert policy["img-src"].split() == ["https:", "data:", f"{base.scheme}://{base.netloc}"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["form-action"] == "'none'"
    assert response["X-Robots-Tag"] == "noindex"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "private, no-store"


def test_drafts_and_cancelled_campaigns_are_shown(workspace, contact):
    campaign = _campaign(workspace)
    assert campaign.status == Campaign.Status.DRAFT
    assert Client().get(_path(campaign, contact)).status_code == 200
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)
    assert Client().get(_path(campaign, contact)).status_code == 200


def test_head_is_answered_and_post_refused(workspace, contact):
    path = _path(_campaign(workspace), contact)
    assert Client().head(path).status_code == 200
    assert Client().post(path).status_code == 405


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: t.replace(":", "x", 1),
        lambda t: t.split(":")[0],
        lambda t: "garbage",
        lambda t: "x" * 500,
    ],
)
def test_forged_token_is_404_without_a_query(workspace, contact, mangle, django_assert_num_queries):
    path = _path(_campaign(workspace), contact)
    token = path.removeprefix("/v/")
    with django_assert_num_queries(0):
        response = Client().get("/v/" + mangle(token))
    assert response.status_code == 404
    assert b"This link is not valid" in response.content


def test_token_of_another_purpose_is_404_without_a_query(
    workspace, contact, django_assert_num_queries
):
    campaign = _campaign(workspace)
    token = unsubscribe_token(
        workspace_id=workspace.pk, contact_id=contact.pk, campaign_id=campaign.pk
    )
    with django_assert_num_queries(0):
        assert Client().get(f"/v/{token}").status_code == 404


def test_campaign_of_another_workspace_is_404(workspace, contact):
    foreign = _campaign(WorkspaceFactory())
    token = token_make(
        purpose=Purpose.WEB_VERSION,
        workspace_id=workspace.pk,
        contact_id=contact.pk,
        campaign_id=foreign.pk,
    )
    response = Client().get(f"/v/{token}")
    assert response.status_code == 404
    assert b"Hi Ada" not in response.content


def test_contact_of_another_workspace_is_404(workspace):
    campaign = _campaign(workspace)
    stranger = ContactFactory(workspace=WorkspaceFactory(), first_name="Eve")
    token = token_make(
        purpose=Purpose.WEB_VERSION,
        workspace_id=workspace.pk,
        contact_id=stranger.pk,
        campaign_id=campaign.pk,
    )
    assert Client().get(f"/v/{token}").status_code == 404


def test_token_without_a_campaign_is_404(workspace, contact):
    token = token_make(
        purpose=Purpose.WEB_VERSION, workspace_id=workspace.pk, contact_id=contact.pk
    )
    assert Client().get(f"/v/{token}").status_code == 404


def test_erased_contact_is_404(workspace, contact):
    path = _path(_campaign(workspace), contact)
    gdpr_erase(workspace=workspace, email=contact.email, acting_user=None)
    response = Client().get(path)
    assert response.status_code == 404
    assert b"Ada" not in response.content


def test_suspended_workspace_is_404(workspace, contact):
    path = _path(_campaign(workspace), contact)
    Workspace.objects.filter(pk=workspace.pk).update(status=Workspace.Status.SUSPENDED)
    assert Client().get(path).status_code == 404


SSTI_PAYLOADS = [
    "{{ settings.SECRET_KEY }}",
    "{{ settings }}",
    "{% load static %}",
    "{% load log %}{% get_admin_log 10 as log %}",
    '{% include "/etc/passwd" %}',
    "{% debug %}",
    "{{ contact.__class__ }}",
    "{{ contact.__class__.__mro__ }}",
    "{{ request.META }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ config.items() }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{% for key, value in settings.items %}{{ value }}{% endfor %}",
    "{{ 7*7 }}",
    "${7*7}",
    "{{ first_name|safe }}",
    "{{ attributes.__class__ }}",
]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
@pytest.mark.parametrize("part", ["html", "subject", "preheader", "text"])
def test_ssti_payloads_give_no_secret_and_no_error_page(workspace, contact, payload, part):
    campaign = _campaign(workspace)
    # Straight into the database: the editor's form would refuse most of these.
    Campaign.objects.filter(pk=campaign.pk).update(
        **{part: f"<p>{payload}</p>" if part == "html" else payload}
    )
    response = Client().get(_path(campaign, contact))
    assert response.status_code in (200, 404)
    page = response.content.decode()
    assert settings.SECRET_KEY not in page
    assert "Traceback" not in page
    assert "root:x:0:0" not in page
    assert "__globals__" not in page
    assert "<class " not in page


def test_unknown_names_render_empty_on_a_working_page(workspace, contact):
    campaign = _campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(
        html="<p>Key: [{{ settings.SECRET_KEY }}] [{{ request.META }}] {{ first_name }}</p>"
    )
    response = Client().get(_path(campaign, contact))
    assert response.status_code == 200
    assert "<p>Key: [] [] Ada</p>" in response.content.decode()
    assert settings.SECRET_KEY not in response.content.decode()


def test_a_body_that_no_longer_compiles_is_the_friendly_404(workspace, contact, caplog):
    campaign = _campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(html='{% include "/etc/passwd" %}')
    response = Client().get(_path(campaign, contact))
    assert response.status_code == 404
    assert b"This link is not valid" in response.content
    assert "does not render" in caplog.text


def test_contact_values_are_escaped(workspace):
    contact = ContactFactory(workspace=workspace, first_name="<script>alert(1)</script>")
    response = Client().get(_path(_campaign(workspace), contact))
    assert b"<script>" not in response.content
    assert b"&lt;script&gt;" in response.content
