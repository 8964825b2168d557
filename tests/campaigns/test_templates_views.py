import html
import re

import pytest
from django.urls import reverse

from accounts.models import AuditEntry, Role
from campaigns import library, services
from campaigns.models import Campaign, Template
from campaigns.starters import STARTERS, starter_get
from compliance.footer import NO_OPT_OUT_LINK
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

LAYOUT = (
    "<html><head><style>.frame { color: #123456; }</style></head><body>"
    '<div class="frame">{{ content }}</div>'
    '<p>{{ postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


def _url(name: str, workspace, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


def _template(workspace, name="House style", html=LAYOUT) -> Template:
    return library.template_create(workspace=workspace, name=name, html=html, acting_user=None)


def _srcdoc(content: bytes) -> str:
    match = re.search(r'<iframe[^>]*srcdoc="([^"]*)"', content.decode())
    assert match, "no iframe with srcdoc"
    return html.unescape(match.group(1))


def _htmx_preview(client, url: str, layout: str):
    return client.post(url, {"name": "x", "html": layout}, headers={"HX-Request": "true"})


# ---------------------------------------------------------------- the library


def test_empty_library_offers_the_starters_and_a_new_template(workspace, member_client):
    response = member_client(workspace, Role.EDITOR).get(_url("template_list", workspace))
    assert response.status_code == 200
    content = response.content.decode()
    assert "No templates yet" in content
    assert content.count("Use this layout") == len(STARTERS)
    for starter in STARTERS:
        assert starter.name in content
    assert _url("template_create", workspace) in content


def test_viewer_reads_the_library_without_actions(workspace, member_client):
    _template(workspace)
    response = member_client(workspace, Role.VIEWER).get(_url("template_list", workspace))
    content = response.content.decode()
    assert "House style" in content
    assert "Use this layout" not in content
    assert "New template" not in content
    assert ">Duplicate<" not in content


def test_library_lists_own_templates_with_usage_and_last_edit(
    workspace, member_client, django_assert_num_queries
):
    client = member_client(workspace, Role.EDITOR)
    used = library.template_create(
        workspace=workspace, name="Used layout", html=LAYOUT, acting_user=client.user
    )
    _template(workspace, name="Spare layout")
    _template(WorkspaceFactory(), name="Foreign layout")
    for name in ("One", "Two", "Three"):
        Campaign.objects.create(workspace=workspace, name=name, template=used)
    client.get(_url("template_list", workspace))  # warm the session and membership
    with django_assert_num_queries(5):
        response = client.get(_url("template_list", workspace))
    content = response.content.decode()
    row = re.search(rf'<tr id="template-{used.pk}">.*?</tr>', content, re.S).group(0)
    assert "3 campaigns" in row
    assert f"by {client.user.email}" in row
    assert "0 campaigns" in content  # the spare one
    assert "Foreign layout" not in content
    assert "No templates yet" not in content


def test_use_this_layout_copies_the_starter_once_and_opens_it(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("template_create", workspace), {"starter": "newsletter"})
    template = Template.objects.get(workspace=workspace)
    assert response.status_code == 302
    assert response["Location"] == _url("template_edit", workspace, template_id=template.pk)
    assert template.is_starter
    assert template.html == starter_get("newsletter").html
    assert [(v.number, v.created_by) for v in template.versions.all()] == [(1, client.user)]
    again = client.post(_url("template_create", workspace), {"starter": "newsletter"})
    assert again["Location"] == response["Location"]
    assert Template.objects.filter(workspace=workspace).count() == 1


def test_use_of_an_unknown_starter_is_an_error_not_a_500(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("template_create", workspace), {"starter": "../etc"}, follow=True)
    assert response.status_code == 200
    assert b"Choose one of the built-in layouts." in response.content
    assert not Template.objects.exists()


# ---------------------------------------------------------------- create


def test_create_page_starts_from_a_layout_and_previews_it(workspace, member_client):
    response = member_client(workspace, Role.EDITOR).get(_url("template_create", workspace))
    assert response.status_code == 200
    assert "{{ content }}" in html.unescape(response.content.decode())
    document = _srcdoc(response.content)
    assert "Hello Alex" in document  # the sample body, for the sample contact
    assert "1 Test Street" in document


def test_create_saves_version_one_and_warns_about_a_missing_footer(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    bare = "<html><body>{{ content }}</body></html>"
    response = client.post(_url("template_create", workspace), {"name": "Bare", "html": bare})
    template = Template.objects.get(workspace=workspace, name="Bare")
    assert response.status_code == 302
    assert response["Location"] == _url("template_edit", workspace, template_id=template.pk)
    assert template.versions.get().number == 1
    assert AuditEntry.objects.filter(verb="template.created", target_id=str(template.pk)).exists()
    page = client.get(response["Location"]).content.decode()
    assert "alert-warning" in page
    assert html.escape(NO_OPT_OUT_LINK) in page


def test_create_refuses_broken_html_with_its_position_and_keeps_the_input(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    broken = "<html><body>{{ content }}\n<p>{% for x in y %}</p></body></html>"
    response = client.post(_url("template_create", workspace), {"name": "Draft", "html": broken})
    assert response.status_code == 400
    content = response.content.decode()
    assert "Line 2, column 4" in content
    assert html.escape(broken) in content  # what was typed is still in the field
    assert 'value="Draft"' in content
    assert not Template.objects.exists()


def test_create_refuses_a_layout_without_its_slot(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("template_create", workspace), {"name": "Slotless", "html": "<p>hi</p>"}
    )
    assert response.status_code == 400
    assert b"content }} slot" in response.content
    assert not Template.objects.exists()


# ---------------------------------------------------------------- edit


def test_edit_saves_a_new_version_and_lists_the_history(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    changed = LAYOUT.replace("#123456", "#654321")
    response = client.post(
        _url("template_edit", workspace, template_id=template.pk),
        {"name": "House style", "html": changed},
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.html == changed
    assert [v.number for v in template.versions.all()] == [2, 1]
    page = client.get(_url("template_edit", workspace, template_id=template.pk))
    content = page.content.decode()
    newest = re.search(r'<tr id="version-2">.*?</tr>', content, re.S).group(0)
    oldest = re.search(r'<tr id="version-1">.*?</tr>', content, re.S).group(0)
    assert "Current" in newest
    assert client.user.email in newest
    assert "System" in oldest  # created by no one in particular
    restore_url = _url("template_version_restore", workspace, template_id=template.pk, number=1)
    assert restore_url in oldest
    assert "Restore" not in newest


def test_edit_refuses_broken_html_and_saves_nothing(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("template_edit", workspace, template_id=template.pk),
        {"name": "Renamed", "html": "{{ content }}\n\n{% if %}"},
    )
    assert response.status_code == 400
    assert b"Line 3, column 1" in response.content
    template.refresh_from_db()
    assert (template.name, template.html, template.versions.count()) == ("House style", LAYOUT, 1)


def test_live_preview_renders_unsaved_html_without_saving(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    unsaved = LAYOUT.replace("<body>", "<body><h2>Unsaved banner</h2>")
    response = _htmx_preview(
        client, _url("template_edit", workspace, template_id=template.pk), unsaved
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert content.lstrip().startswith('<div id="template-preview"')  # the frame, not a page
    document = _srcdoc(response.content)
    assert "Unsaved banner" in document
    assert "Hello Alex" in document
    assert "color: #123456" in document or "color:#123456" in document  # CSS inlined
    template.refresh_from_db()
    assert template.html == LAYOUT
    assert template.versions.count() == 1


def test_live_preview_of_a_new_template_works_before_it_exists(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    response = _htmx_preview(client, _url("template_create", workspace), LAYOUT)
    assert response.status_code == 200
    assert "Hello Alex" in _srcdoc(response.content)
    assert not Template.objects.exists()


def test_live_preview_names_a_layout_error_with_line_and_column(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = _htmx_preview(
        client,
        _url("template_edit", workspace, template_id=template.pk),
        "<html>\n<body>{{ content }}\n<p>{{ first_name|nosuchfilter }}</p></body></html>",
    )
    content = response.content.decode()
    assert "Layout:" in content
    assert "line 3, column 4" in content
    assert "<iframe" not in content


def test_live_preview_warns_when_the_footer_is_missing(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = _htmx_preview(
        client,
        _url("template_edit", workspace, template_id=template.pk),
        "<html><body>{{ content }}</body></html>",
    )
    content = response.content.decode()
    assert "<iframe" in content  # a warning, not an error: the preview still shows
    assert html.escape(NO_OPT_OUT_LINK) in content
    assert html.escape(library.NO_POSTAL_ADDRESS_TAG) in content


def test_editor_iframe_is_sandboxed_and_the_page_csp_forbids_scripts(
    workspace, member_client, settings
):
    settings.BASE_URL = "https://esp.example.com:8443"
    template = _template(
        workspace, html=LAYOUT.replace("<body>", "<body><script>alert(1)</script>")
    )
    response = member_client(workspace, Role.EDITOR).get(
        _url("template_edit", workspace, template_id=template.pk)
    )
    content = response.content.decode()
    iframe = re.search(r"<iframe[^>]*>", content).group(0)
    assert re.search(r"\ssandbox[\s>=]", iframe)
    assert "allow-scripts" not in iframe
    assert "<script>alert" not in content
    csp = response["Content-Security-Policy"]
    assert "unsafe-inline" not in re.search(r"script-src ([^;]*)", csp).group(1)
    assert "https://esp.example.com:8443" in re.search(r"img-src ([^;]*)", csp).group(1)


@pytest.mark.parametrize(
    "payload",
    ["{{ settings.SECRET_KEY }}", '{% include "/etc/passwd" %}', "{{ 7*7 }}", "{{", "{% if %}"],
)
def test_hostile_layouts_are_never_a_500(workspace, member_client, settings, payload):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    url = _url("template_edit", workspace, template_id=template.pk)
    layout = LAYOUT.replace("<body>", f"<body>{payload}")
    preview = _htmx_preview(client, url, layout)
    save = client.post(url, {"name": "x", "html": layout})
    for response in (preview, save):
        assert response.status_code in (200, 302, 400)
        assert settings.SECRET_KEY not in response.content.decode()
        assert b">49<" not in response.content


# ---------------------------------------------------------------- restore and duplicate


def test_restore_makes_an_old_version_current_as_a_new_version(workspace, member_client):
    template = _template(workspace)
    library.template_update(
        template=template,
        name=template.name,
        html=LAYOUT.replace("#123456", "#000"),
        acting_user=None,
    )
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("template_version_restore", workspace, template_id=template.pk, number=1)
    )
    assert response.status_code == 302
    assert response["Location"] == _url("template_edit", workspace, template_id=template.pk)
    template.refresh_from_db()
    assert template.html == LAYOUT
    newest = template.versions.order_by("-number").first()
    assert (newest.number, newest.created_by) == (3, client.user)
    page = client.get(response["Location"]).content.decode()
    assert "Version 1 restored" in page


def test_restore_of_the_current_version_says_so(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("template_version_restore", workspace, template_id=template.pk, number=1),
        follow=True,
    )
    assert b"same as the current HTML" in response.content
    assert template.versions.count() == 1


def test_restore_of_a_missing_version_is_404(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("template_version_restore", workspace, template_id=template.pk, number=99)
    )
    assert response.status_code == 404


def test_duplicate_opens_the_copy(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("template_duplicate", workspace, template_id=template.pk))
    copy = Template.objects.get(workspace=workspace, name="Copy of House style")
    assert response.status_code == 302
    assert response["Location"] == _url("template_edit", workspace, template_id=copy.pk)
    assert copy.html == template.html
    assert copy.versions.count() == 1
    assert AuditEntry.objects.filter(verb="template.duplicated", target_id=str(copy.pk)).exists()


def test_duplicate_and_restore_need_post(workspace, member_client):
    template = _template(workspace)
    client = member_client(workspace, Role.EDITOR)
    assert (
        client.get(_url("template_duplicate", workspace, template_id=template.pk)).status_code
        == 405
    )
    restore = _url("template_version_restore", workspace, template_id=template.pk, number=1)
    assert client.get(restore).status_code == 405


# ---------------------------------------------------------------- roles and workspaces


def test_viewer_reads_the_editor_but_cannot_change_anything(workspace, member_client):
    template = _template(workspace)
    library.template_update(
        template=template,
        name=template.name,
        html=LAYOUT.replace("#123456", "#000"),
        acting_user=None,
    )
    client = member_client(workspace, Role.VIEWER)
    page = client.get(_url("template_edit", workspace, template_id=template.pk))
    content = page.content.decode()
    assert page.status_code == 200
    assert "disabled" in content
    assert ">Save<" not in content
    assert ">Restore<" not in content
    assert ">Duplicate<" not in content
    assert "hx-post" not in content
    assert "<iframe" in content  # the saved layout's preview
    edit = client.post(
        _url("template_edit", workspace, template_id=template.pk), {"name": "x", "html": LAYOUT}
    )
    restore = client.post(
        _url("template_version_restore", workspace, template_id=template.pk, number=1)
    )
    duplicate = client.post(_url("template_duplicate", workspace, template_id=template.pk))
    create = client.post(_url("template_create", workspace), {"starter": "plain"})
    assert [r.status_code for r in (edit, restore, duplicate, create)] == [403, 403, 403, 403]
    assert client.get(_url("template_create", workspace)).status_code == 403
    template.refresh_from_db()
    assert template.versions.count() == 2
    assert Template.objects.count() == 1


def test_template_of_another_workspace_is_404(workspace, member_client):
    foreign = _template(WorkspaceFactory())
    library.template_update(
        template=foreign,
        name=foreign.name,
        html=LAYOUT.replace("#123456", "#000"),
        acting_user=None,
    )
    client = member_client(workspace, Role.OWNER)
    urls = [
        ("get", _url("template_edit", workspace, template_id=foreign.pk)),
        ("post", _url("template_edit", workspace, template_id=foreign.pk)),
        ("post", _url("template_duplicate", workspace, template_id=foreign.pk)),
        ("post", _url("template_version_restore", workspace, template_id=foreign.pk, number=1)),
    ]
    for method, url in urls:
        assert getattr(client, method)(url, {"name": "x", "html": LAYOUT}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.versions.count() == 2
    assert Template.objects.count() == 1


def test_starter_copies_are_per_workspace(workspace, member_client):
    other = WorkspaceFactory()
    services.template_from_starter(workspace=other, starter=STARTERS[0])
    client = member_client(workspace, Role.EDITOR)
    client.post(_url("template_create", workspace), {"starter": STARTERS[0].key})
    assert Template.objects.filter(workspace=workspace).count() == 1
    assert Template.objects.filter(workspace=other).count() == 1
