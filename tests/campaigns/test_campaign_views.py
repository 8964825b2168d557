import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditEntry, Role
from campaigns import library, services
from campaigns.models import Campaign
from campaigns.starters import STARTERS
from tests.factories import ContactFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

LAYOUT = (
    "<html><body>{{ content }}"
    '<p>{{ postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


def _campaign(workspace, **fields) -> Campaign:
    campaign = services.campaign_create(
        workspace=workspace, name="Spring sale", starter=STARTERS[0], acting_user=None
    )
    if fields:
        services.campaign_update(campaign=campaign, acting_user=None, **fields)
    return campaign


def _url(name: str, workspace, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


def _form(**overrides) -> dict:
    return {
        "subject": "Hello {{ first_name }}",
        "preheader": "",
        "from_name": "Shop",
        "from_email": "news@shop.example",
        "reply_to": "",
        "html": '<p>Hi {{ first_name|default:"there" }} from {{ attributes.city }}</p>',
        "text": "",
        **overrides,
    }


def _srcdoc(content: bytes) -> str:
    match = re.search(r'<iframe[^>]*srcdoc="([^"]*)"', content.decode())
    assert match, "no iframe with srcdoc"
    return html.unescape(match.group(1))


def test_empty_list_offers_to_create_the_first_campaign(workspace, member_client):
    response = member_client(workspace, Role.EDITOR).get(_url("campaign_list", workspace))
    assert response.status_code == 200
    assert b"Create your first campaign" in response.content


def test_viewer_sees_no_create_action(workspace, member_client):
    response = member_client(workspace, Role.VIEWER).get(_url("campaign_list", workspace))
    assert b"Create your first campaign" not in response.content


def test_list_shows_name_and_status_of_own_campaigns_only(workspace, member_client):
    _campaign(workspace)
    _campaign(workspace)
    services.campaign_create(
        workspace=WorkspaceFactory(), name="Foreign", starter=None, acting_user=None
    )
    client = member_client(workspace, Role.VIEWER)
    client.get(_url("campaign_list", workspace))  # warm the session and membership
    with CaptureQueriesContext(connection) as two:
        response = client.get(_url("campaign_list", workspace))
    assert response.content.count(b"Spring sale") == 2
    assert b"badge-campaign-draft" in response.content
    assert b"Foreign" not in response.content
    _campaign(workspace)
    _campaign(workspace)
    with CaptureQueriesContext(connection) as four:
        response = client.get(_url("campaign_list", workspace))
    assert response.content.count(b"Spring sale") == 4
    assert len(four) == len(two)  # no query per row


def test_create_makes_a_draft_from_the_starter_and_opens_the_editor(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    assert client.get(_url("campaign_create", workspace)).status_code == 200
    response = client.post(
        _url("campaign_create", workspace), {"name": "Launch", "starter": "announcement"}
    )
    campaign = Campaign.objects.get(workspace=workspace, name="Launch")
    assert response.status_code == 302
    assert response["Location"] == _url("campaign_edit", workspace, campaign_id=campaign.pk)
    assert campaign.template.name == "Announcement"
    assert campaign.created_by == client.user
    assert AuditEntry.objects.filter(verb="campaign.created", target_id=str(campaign.pk)).exists()


def test_create_requires_a_name(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("campaign_create", workspace), {"name": "", "starter": "plain"})
    assert response.status_code == 200
    assert not Campaign.objects.exists()


def test_edit_saves_the_content(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("campaign_edit", workspace, campaign_id=campaign.pk), _form())
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.subject == "Hello {{ first_name }}"
    assert campaign.from_email == "news@shop.example"


def test_edit_refuses_a_template_error_with_its_position(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_edit", workspace, campaign_id=campaign.pk),
        _form(html="<p>ok</p>\n<p>{% for x in y %}</p>"),
    )
    assert response.status_code == 400
    assert b"line 2, column" in response.content
    campaign.refresh_from_db()
    assert "for x" not in campaign.html


def test_edit_refuses_a_line_break_in_the_subject(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_edit", workspace, campaign_id=campaign.pk),
        _form(subject="Hi\r\nBcc: victim@example.com"),
    )
    assert response.status_code == 400
    assert b"Must be one line." in response.content


def test_viewer_reads_the_editor_but_cannot_post(workspace, member_client):
    campaign = _campaign(workspace, subject="Original")
    client = member_client(workspace, Role.VIEWER)
    page = client.get(_url("campaign_edit", workspace, campaign_id=campaign.pk))
    assert page.status_code == 200
    assert b"disabled" in page.content
    assert b">Save<" not in page.content
    edit = client.post(_url("campaign_edit", workspace, campaign_id=campaign.pk), _form())
    preview = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(),
        headers={"HX-Request": "true"},
    )
    assert edit.status_code == 403
    assert preview.status_code == 403
    campaign.refresh_from_db()
    assert campaign.subject == "Original"


def test_preview_renders_merge_tags_for_the_chosen_contact(workspace, member_client):
    campaign = _campaign(workspace)
    contact = ContactFactory(workspace=workspace, first_name="Zoë", attributes={"city": "Köln"})
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(preview_contact=str(contact.pk)),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert b'id="campaign-preview"' in response.content
    assert b"<html" not in response.content.split(b"srcdoc=")[0]  # a fragment, not a page
    document = _srcdoc(response.content)
    assert "Hi Zoë from Köln" in document
    assert "1 Test Street" in document  # the layout's footer
    assert "Hello Zoë" in response.content.decode()  # the inbox line


def test_preview_uses_sample_values_without_a_contact(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(),
        headers={"HX-Request": "true"},
    )
    assert "Hi Alex from" in _srcdoc(response.content)


def test_preview_of_a_contact_of_another_workspace_is_404(workspace, member_client):
    campaign = _campaign(workspace)
    foreign = ContactFactory(workspace=WorkspaceFactory())
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(preview_contact=str(foreign.pk)),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 404


def test_preview_iframe_is_sandboxed_without_scripts(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(html='<p>"quoted" & <b>bold</b></p><script>alert(1)</script>'),
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    iframe = re.search(r"<iframe[^>]*>", content).group(0)
    assert re.search(r"\ssandbox[\s>=]", iframe)
    assert "allow-scripts" not in iframe
    # The document is escaped into the attribute: nothing of it leaks into the page.
    assert "<script>" not in content
    assert "&lt;script&gt;" in iframe
    assert '"quoted" &amp; <b>bold</b>' in _srcdoc(response.content)


def test_edit_page_has_the_preview_and_forbids_scripts_in_its_csp(workspace, member_client):
    campaign = _campaign(workspace, subject="Hi {{ first_name }}")
    response = member_client(workspace, Role.EDITOR).get(
        _url("campaign_edit", workspace, campaign_id=campaign.pk)
    )
    assert response.status_code == 200
    assert "Hello Alex" in _srcdoc(response.content)  # the starter's sample body
    assert b"Hi Alex" in response.content  # the inbox line
    csp = response["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "unsafe-inline" not in script_src
    assert "unsafe-eval" not in script_src


def test_preview_shows_a_template_error_with_line_and_column(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(html="<p>one</p>\n<p>{{ first_name|nosuchfilter }}</p>"),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "HTML body:" in content
    assert "line 2, column" in content
    assert "<iframe" not in content


@pytest.mark.parametrize(
    "payload",
    [
        "{{ settings.SECRET_KEY }}",
        '{% include "/etc/passwd" %}',
        "{% load static %}",
        "{{ contact.__class__ }}",
        "{{ 7*7 }}",
        "{% if %}",
        "{{",
    ],
)
def test_preview_of_hostile_templates_is_never_a_500(workspace, member_client, settings, payload):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(html=f"<p>{payload}</p>", subject=payload),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert settings.SECRET_KEY not in response.content.decode()
    assert b"/etc/passwd" not in response.content or b"root:" not in response.content
    assert b">49<" not in response.content


def test_viewer_gets_the_saved_preview_for_a_contact(workspace, member_client):
    campaign = _campaign(workspace, html="<p>Dear {{ first_name }}</p>")
    contact = ContactFactory(workspace=workspace, first_name="Ines")
    client = member_client(workspace, Role.VIEWER)
    response = client.get(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        {"preview_contact": contact.pk},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Dear Ines" in _srcdoc(response.content)


def test_preview_has_a_plain_text_tab(workspace, member_client):
    campaign = _campaign(workspace, text="Saved plain {{ first_name }}")
    client = member_client(workspace, Role.EDITOR)
    page = client.get(_url("campaign_edit", workspace, campaign_id=campaign.pk)).content.decode()
    assert "Plain text</label>" in page
    assert "<pre>Saved plain Alex</pre>" in page
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(text="Plain hello {{ first_name }}"),
        headers={"HX-Request": "true"},
    )
    assert "<pre>Plain hello Alex</pre>" in response.content.decode()


def test_switches_stay_outside_the_swapped_preview(workspace, member_client):
    """A live update must not reset the reader's choice of tab or width."""
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    page = client.get(_url("campaign_edit", workspace, campaign_id=campaign.pk)).content.decode()
    for switch in (
        "preview-tab-html",
        "preview-tab-text",
        "preview-width-desktop",
        "preview-width-mobile",
    ):
        assert f'type="radio" name="preview_{switch.split("-")[1]}" id="{switch}"' in page
    assert page.index('id="preview-width-mobile"') < page.index('id="campaign-preview"')
    assert 'hx-target="#campaign-preview"' in page
    fragment = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(),
        headers={"HX-Request": "true"},
    ).content.decode()
    assert 'type="radio"' not in fragment
    assert "style=" not in page.split("srcdoc=")[0]  # no inline styles on our own page
    assert "<script>" not in page


def test_inbox_line_shows_sender_subject_and_preheader(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(from_name="Trail Shop", preheader="New boots inside, {{ first_name }}"),
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    line = re.search(r'<div class="inbox-line".*?</div>\s*</div>\s*</div>', content, re.S).group(0)
    assert '<strong class="inbox-from">Trail Shop</strong>' in line
    assert '<strong class="inbox-subject">Hello Alex</strong>' in line
    assert "New boots inside, Alex" in line


def test_inbox_line_without_a_preheader_shows_the_start_of_the_text(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(from_name="", html="<p>Opening words here</p>"),
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    assert '<strong class="inbox-from">news@shop.example</strong>' in content
    assert re.search(r'class="inbox-preheader[^"]*">\W+Opening words here', content)


def test_layout_picker_offers_only_the_workspaces_layouts(workspace, member_client):
    campaign = _campaign(workspace)
    own = library.template_create(
        workspace=workspace, name="Own layout", html=LAYOUT, acting_user=None
    )
    library.template_create(
        workspace=WorkspaceFactory(), name="Foreign layout", html=LAYOUT, acting_user=None
    )
    page = member_client(workspace, Role.EDITOR).get(
        _url("campaign_edit", workspace, campaign_id=campaign.pk)
    )
    content = page.content.decode()
    picker = re.search(r'<select name="template".*?</select>', content, re.S).group(0)
    assert f'<option value="{own.pk}">Own layout</option>' in picker
    assert f'<option value="{campaign.template_id}" selected>' in picker
    assert "No layout" in picker
    assert "Foreign layout" not in picker


def test_edit_saves_the_chosen_layout(workspace, member_client):
    campaign = _campaign(workspace)
    own = library.template_create(
        workspace=workspace, name="Own layout", html=LAYOUT, acting_user=None
    )
    client = member_client(workspace, Role.EDITOR)
    url = _url("campaign_edit", workspace, campaign_id=campaign.pk)
    assert client.post(url, _form(template=str(own.pk))).status_code == 302
    campaign.refresh_from_db()
    assert campaign.template == own
    assert client.post(url, _form(template="")).status_code == 302
    campaign.refresh_from_db()
    assert campaign.template is None


def test_edit_refuses_a_layout_of_another_workspace(workspace, member_client):
    campaign = _campaign(workspace)
    starter_layout = campaign.template
    foreign = library.template_create(
        workspace=WorkspaceFactory(), name="Foreign layout", html=LAYOUT, acting_user=None
    )
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_edit", workspace, campaign_id=campaign.pk),
        _form(template=str(foreign.pk), subject="Changed"),
    )
    assert response.status_code == 400
    assert b"Select a valid choice" in response.content
    assert "Changed" in response.content.decode()  # what was typed is kept
    assert "Foreign layout" not in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.template == starter_layout
    assert campaign.subject == ""


def test_a_post_without_the_picker_keeps_the_layout(workspace, member_client):
    campaign = _campaign(workspace)
    layout = campaign.template
    client = member_client(workspace, Role.EDITOR)
    client.post(_url("campaign_edit", workspace, campaign_id=campaign.pk), _form())
    campaign.refresh_from_db()
    assert campaign.template == layout


def test_preview_uses_the_unsaved_layout_choice(workspace, member_client):
    campaign = _campaign(workspace)
    own = library.template_create(
        workspace=workspace,
        name="Own layout",
        html=LAYOUT.replace("<body>", "<body><h2>Own banner</h2>"),
        acting_user=None,
    )
    client = member_client(workspace, Role.EDITOR)
    url = _url("campaign_preview", workspace, campaign_id=campaign.pk)
    chosen = client.post(url, _form(template=str(own.pk)), headers={"HX-Request": "true"})
    assert "Own banner" in _srcdoc(chosen.content)
    bare = client.post(url, _form(template=""), headers={"HX-Request": "true"})
    document = _srcdoc(bare.content)
    assert "Own banner" not in document
    assert "1 Test Street" not in document  # no layout: the body alone
    campaign.refresh_from_db()
    assert campaign.template != own


def test_preview_with_a_layout_of_another_workspace_is_404(workspace, member_client):
    campaign = _campaign(workspace)
    foreign = library.template_create(
        workspace=WorkspaceFactory(), name="Foreign", html=LAYOUT, acting_user=None
    )
    response = member_client(workspace, Role.EDITOR).post(
        _url("campaign_preview", workspace, campaign_id=campaign.pk),
        _form(template=str(foreign.pk)),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 404


def test_preview_csp_allows_images_from_the_site_itself(workspace, member_client, settings):
    settings.BASE_URL = "http://media.esp.test:8000"
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).get(
        _url("campaign_edit", workspace, campaign_id=campaign.pk)
    )
    csp = response["Content-Security-Policy"]
    img_src = re.search(r"img-src ([^;]*)", csp).group(1).split()
    assert "http://media.esp.test:8000" in img_src
    assert "https:" in img_src
    assert "'unsafe-inline'" not in re.search(r"script-src ([^;]*)", csp).group(1)


def test_campaign_of_another_workspace_is_404(workspace, member_client):
    foreign = _campaign(WorkspaceFactory())
    client = member_client(workspace, Role.OWNER)
    assert client.get(_url("campaign_edit", workspace, campaign_id=foreign.pk)).status_code == 404
    response = client.post(_url("campaign_preview", workspace, campaign_id=foreign.pk), _form())
    assert response.status_code == 404
