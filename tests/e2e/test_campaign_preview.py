"""The campaign editor's preview in Chromium: an email's scripts never run there, its own
styling does show, typing updates it, and the mobile switch narrows it.

The email below tries everything a script could do from the preview: change the editor's
title, mark its own document, call the live server, navigate the editor away. Each would
be observable here; none may happen. The iframe's sandbox stops them, and so, on its own,
does the page's CSP (shown by loading the same document into an iframe without sandbox).
"""

import re

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

from accounts.models import Role
from campaigns import services
from campaigns.starters import starter_get
from tests.factories import ContactFactory, MembershipFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HOSTILE_BODY = """<h1 class="headline" style="color: #b91c1c">Spring boots are here</h1>
<p>Hello {{ first_name|default:"there" }}, the new range has landed.</p>
<script>
  parent.document.title = "script ran";
  document.body.dataset.script = "ran";
  fetch("/probe/fetch");
  new Image().src = "/probe/image";
  window.top.location = "/probe/navigated";
</script>
<img src="x" alt="" onerror="ONERROR">
""".replace(
    "ONERROR",
    "parent.document.title='onerror ran';document.body.dataset.onerror='ran';"
    "fetch('/probe/onerror')",
)

PREVIEW_FRAME = "#campaign-preview iframe"


def _sign_in(page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


@pytest.fixture
def editor_page(page, live_server, settings):
    """The editor of a campaign whose body carries a script and an onerror handler."""
    settings.BASE_URL = live_server.url
    membership = MembershipFactory(role=Role.EDITOR, workspace__name="Trail Shop Co.")
    workspace = membership.workspace
    ContactFactory(workspace=workspace, email="zoe@example.org", first_name="Zoë")
    campaign = services.campaign_create(
        workspace=workspace,
        name="Spring boots",
        starter=starter_get("newsletter"),
        acting_user=membership.user,
    )
    services.campaign_update(
        campaign=campaign,
        acting_user=membership.user,
        subject="New boots for {{ first_name }}",
        preheader="Twelve styles, free returns",
        from_name="Trail Shop",
        from_email="news@trail.example",
        html=HOSTILE_BODY,
    )
    page.probes = []
    page.on(
        "request",
        lambda request: page.probes.append(request.url) if "/probe/" in request.url else None,
    )
    page.console_log = []
    page.on(
        "console",
        lambda message: page.console_log.append((message.text, message.location.get("url", ""))),
    )
    _sign_in(page, live_server, membership.user)
    url = reverse(
        "campaigns:campaign_edit",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": campaign.pk},
    )
    response = page.goto(url)
    page.editor_url = page.url
    page.editor_csp = response.headers["content-security-policy"]
    return page


def _nothing_ran(page, title: str) -> None:
    page.wait_for_timeout(750)  # time for a script, a handler or a request to show itself
    assert page.title() == title
    assert page.url == page.editor_url
    assert page.probes == []


def _page_violations(page) -> list[str]:
    """CSP reports of the editor page itself; the email's own blocked parts don't count."""
    return [
        text
        for text, url in page.console_log
        if "Content Security Policy" in text and url != "about:srcdoc"
    ]


def test_scripts_in_the_email_never_run_and_its_styling_shows(editor_page, tmp_path):
    page = editor_page
    title = page.title()
    frame = page.frame_locator(PREVIEW_FRAME)
    expect(frame.locator("h1.headline")).to_have_text("Spring boots are here")

    iframe = page.locator(PREVIEW_FRAME)
    assert iframe.get_attribute("sandbox") == ""  # present, and allowing nothing
    script_src = re.search(r"script-src ([^;]*)", page.editor_csp).group(1)
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src

    _nothing_ran(page, title)
    body = frame.locator("body")
    assert body.get_attribute("data-script") is None
    assert body.get_attribute("data-onerror") is None
    assert any("allow-scripts" in text for text, _ in page.console_log), page.console_log

    # The email's own styling shows: its inline colour, and the layout's stylesheet
    # (inlined into the table, and its dark-mode rules kept in a <style> block).
    assert (
        frame.locator("h1.headline").evaluate("e => getComputedStyle(e).color")
        == "rgb(185, 28, 28)"
    )
    wrapper = frame.locator("table.wrapper")
    assert wrapper.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(243, 244, 246)"
    page.screenshot(path=str(tmp_path / "editor-light.png"))
    page.emulate_media(color_scheme="dark")
    expect(wrapper).to_have_css("background-color", "rgb(17, 24, 39)")
    page.screenshot(path=str(tmp_path / "editor-dark.png"))

    # The inbox line reads like a row of a mail client's list.
    inbox = page.locator(".inbox-line")
    expect(inbox.locator(".inbox-from")).to_have_text("Trail Shop")
    expect(inbox.locator(".inbox-subject")).to_have_text("New boots for Alex")
    expect(inbox.locator(".inbox-preheader")).to_contain_text("Twelve styles, free returns")

    assert _page_violations(page) == []
    assert (tmp_path / "editor-light.png").stat().st_size > 10_000


def test_the_page_csp_alone_stops_the_script(editor_page):
    """Without the sandbox the document would be same-origin: the inherited CSP still
    refuses its inline script and handler."""
    page = editor_page
    title = page.title()
    expect(page.frame_locator(PREVIEW_FRAME).locator("h1.headline")).to_be_visible()
    page.evaluate(
        """() => {
            const sandboxed = document.querySelector('#campaign-preview iframe');
            const open = document.createElement('iframe');
            open.id = 'unsandboxed';
            open.srcdoc = sandboxed.srcdoc;
            sandboxed.after(open);
        }"""
    )
    expect(page.frame_locator("#unsandboxed").locator("h1.headline")).to_be_visible()
    _nothing_ran(page, title)
    assert page.frame_locator("#unsandboxed").locator("body").get_attribute("data-script") is None
    refusals = [text for text, _ in page.console_log if "Content Security Policy" in text]
    assert any("inline script" in text for text in refusals), page.console_log
    assert any("inline event handler" in text for text in refusals), page.console_log


def test_typing_updates_the_preview_and_mobile_narrows_it(editor_page, tmp_path):
    page = editor_page
    title = page.title()
    frame = page.frame_locator(PREVIEW_FRAME)
    expect(frame.locator("h1.headline")).to_be_visible()

    # Live preview: what is typed shows without saving, rendered for the chosen contact.
    page.get_by_label("Preview for").select_option(label="zoe@example.org")
    page.get_by_label("HTML body").fill('<h1 class="typed">Typed for {{ first_name }}</h1>')
    expect(frame.locator("h1.typed")).to_have_text("Typed for Zoë")
    expect(page.locator(".inbox-subject")).to_have_text("New boots for Zoë")

    # Leaving the field fires "change", one more update: let it land before measuring.
    with page.expect_response(re.compile(r"/preview/$")):
        page.get_by_label("HTML body").blur()
    expect(frame.locator("h1.typed")).to_have_text("Typed for Zoë")

    # Desktop is wide enough for the 600px email; mobile narrows the frame, and the
    # email's responsive rules take over inside it.
    iframe = page.locator(PREVIEW_FRAME)
    desktop = iframe.bounding_box()["width"]
    container = frame.locator("table.container").first
    assert container.evaluate("e => e.getBoundingClientRect().width") == 600
    page.get_by_text("Mobile", exact=True).click()
    expect(iframe).to_have_css("width", "375px")
    assert iframe.bounding_box()["width"] < desktop
    assert container.evaluate("e => e.getBoundingClientRect().width") <= 375
    page.screenshot(path=str(tmp_path / "editor-mobile.png"))

    # Another live update keeps the chosen width: the switches are outside the swap.
    page.get_by_label("HTML body").fill('<h1 class="typed">Second edit</h1>')
    expect(frame.locator("h1.typed")).to_have_text("Second edit")
    expect(page.locator(PREVIEW_FRAME)).to_have_css("width", "375px")

    # The plain-text tab shows the text part instead of the frame.
    page.get_by_text("Plain text", exact=True).click()
    expect(page.locator(".preview-text pre")).to_contain_text("Second edit")
    expect(page.locator(PREVIEW_FRAME)).to_be_hidden()
    _nothing_ran(page, title)
    assert _page_violations(page) == []


def test_template_library_journey(page, live_server, settings, tmp_path):
    """Use a built-in layout, edit it with the live preview, save, and restore version 1."""
    settings.BASE_URL = live_server.url
    membership = MembershipFactory(role=Role.EDITOR, workspace__name="Trail Shop Co.")
    _sign_in(page, live_server, membership.user)
    page.goto(
        reverse("campaigns:template_list", kwargs={"workspace_slug": membership.workspace.slug})
    )
    expect(page.get_by_role("heading", name="No templates yet")).to_be_visible()
    page.screenshot(path=str(tmp_path / "library-empty.png"), full_page=True)
    page.get_by_role("button", name="Use the Announcement layout").click()

    expect(page.get_by_role("heading", name="Announcement")).to_be_visible()
    frame = page.frame_locator("#template-preview iframe")
    expect(frame.locator("h1")).to_contain_text("Hello Alex")  # the sample body
    html_field = page.get_by_role("textbox", name="HTML")
    original = html_field.input_value()
    edited = original.replace("{{ content }}", "<p class='banner'>Spring banner</p>{{ content }}")
    html_field.fill(edited)
    expect(frame.locator("p.banner")).to_have_text("Spring banner")
    page.screenshot(path=str(tmp_path / "template-editor.png"))

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Template saved.")).to_be_visible()
    versions = page.locator(".template-versions tbody tr")
    expect(versions).to_have_count(2)
    expect(versions.first).to_contain_text("Current")
    expect(versions.first).to_contain_text(membership.user.email)

    page.get_by_role("button", name="Restore version 1").click()
    expect(page.get_by_role("status").filter(has_text="Version 1 restored")).to_be_visible()
    expect(versions).to_have_count(3)
    assert page.get_by_role("textbox", name="HTML").input_value() == original
    expect(frame.locator("p.banner")).to_have_count(0)

    page.get_by_role("link", name="Templates", exact=True).first.click()
    row = page.locator(".template-library tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("0 campaigns")
    page.screenshot(path=str(tmp_path / "library.png"), full_page=True)
    assert page.csp_violations == []
