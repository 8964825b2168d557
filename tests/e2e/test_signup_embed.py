"""The embed snippet works on another site: Chromium opens a page served from a second
loopback origin, submits the pasted form to the live server, the confirmation mail arrives at
a real SMTP server, and pressing the button behind its link subscribes the person."""

import functools
import re
import secrets
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.urls import reverse
from playwright.sync_api import expect

from accounts.models import Role
from contacts.models import ConsentRecord, Subscription
from tests.contacts.signup_factories import SignupFormFactory
from tests.factories import MembershipFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def customer_site(tmp_path):
    """A static web server on 127.0.0.2: another origin than the live server's."""
    root = tmp_path / "customer-site"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.2:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _sign_in(page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


def test_embed_posted_from_another_origin_confirms_by_mail(
    page, live_server, customer_site, smtp_sink, settings, tmp_path
):
    settings.BASE_URL = live_server.url
    # Unique, because test suites running side by side share the Redis of the daily limit.
    address = f"ada-{secrets.token_hex(4)}@example.org"
    form = SignupFormFactory(
        workspace__name="Trail Notes Co.", contact_list__name="Monthly trail notes"
    )
    editor = MembershipFactory(workspace=form.workspace, role=Role.EDITOR).user

    # The marketer copies the snippet from the form's page.
    _sign_in(page, live_server, editor)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(reverse("contacts:form_list", kwargs={"workspace_slug": form.workspace.slug}))
    expect(page.get_by_role("link", name="Signup forms")).to_have_attribute("aria-current", "page")
    page.screenshot(path=str(tmp_path / "form_list.png"), full_page=True)
    page.get_by_role("link", name=form.name).click()
    expect(page.get_by_role("heading", name="Embed on your website")).to_be_visible()
    page.screenshot(path=str(tmp_path / "form_detail.png"), full_page=True)
    page.get_by_role("button", name="Copy HTML").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert snippet == page.locator("#embed-snippet").input_value()
    assert f'action="{live_server.url}/f/{form.public_id}/"' in snippet

    # ...and pastes it into a page of their own site, on another origin.
    root, origin = customer_site
    (root / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Customer blog</title></head>"
        f"<body><h1>Our blog</h1>{snippet}</body></html>",
        encoding="utf-8",
    )
    page.goto(f"{origin}/index.html")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Email", exact=True).fill(address)
    page.get_by_label(form.consent_text).check()
    with page.expect_request(re.compile(rf"/f/{form.public_id}/$")) as posted:
        page.get_by_role("button", name=form.button_label).click()
    assert posted.value.method == "POST"
    assert posted.value.headers.get("origin") == origin

    expect(page).to_have_url(f"{live_server.url}/f/{form.public_id}/thanks/")
    expect(page.get_by_text(form.success_message)).to_be_visible()
    expect(page.get_by_text("Trail Notes Co.").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "thanks.png"), full_page=True)
    subscription = Subscription.objects.get(contact__email=address)
    assert subscription.status == Subscription.Status.PENDING
    assert subscription.contact.first_name == "Ada"

    # The confirmation mail arrives; opening the link alone confirms nothing.
    assert smtp_sink.received.wait(10)
    [message] = smtp_sink.to(address)
    body = message.get_body(("plain",)).get_content()
    link = re.search(rf"{re.escape(live_server.url)}/f/confirm/[^/\s]+/", body).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    page.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.PENDING

    page.get_by_role("button", name="Yes, subscribe me").click()
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    page.screenshot(path=str(tmp_path / "confirmed.png"), full_page=True)
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.SUBSCRIBED
    confirmed = ConsentRecord.objects.get(contact=subscription.contact, action="confirmed")
    assert confirmed.ip == "127.0.0.1"
    assert "Chrome" in confirmed.user_agent
    granted = ConsentRecord.objects.get(contact=subscription.contact, action="granted")
    assert granted.consent_text == form.consent_text
    assert "Chrome" in granted.user_agent
    assert page.csp_violations == []


def test_hosted_page_looks_right_and_reports_errors(page, live_server, tmp_path, settings):
    settings.BASE_URL = live_server.url
    form = SignupFormFactory(workspace__name="Trail Notes Co.")
    page.goto(f"/f/{form.public_id}/")
    expect(page.get_by_role("heading", name=form.title)).to_be_visible()
    expect(page.locator(".public-brand")).to_contain_text("Trail Notes Co.")
    # The honeypot is not visible to people.
    expect(page.locator("input[name=website]")).not_to_be_in_viewport()
    page.screenshot(path=str(tmp_path / "hosted.png"), full_page=True)

    page.get_by_label("Email", exact=True).fill("not-an-address")
    page.get_by_label(form.consent_text).check()
    page.get_by_role("button", name=form.button_label).click()
    expect(page.get_by_text("Enter a valid email address")).to_be_visible()
    expect(page.get_by_label("Email", exact=True)).to_have_value("not-an-address")
    page.screenshot(path=str(tmp_path / "hosted_error.png"), full_page=True)
    assert page.csp_violations == []
