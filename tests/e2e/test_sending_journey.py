import re

import pytest
from playwright.sync_api import expect

from sending.models import SendingDomain
from tests.factories import TEST_PASSWORD, MembershipFactory
from tests.sending.conftest import dns_server, publish  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_marketer_adds_a_domain_copies_records_and_verifies_them(page, dns_server, tmp_path):  # noqa: F811
    membership = MembershipFactory(role="owner")
    slug = membership.workspace.slug
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(membership.user.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.goto(f"/w/{slug}/sending/")
    expect(page.get_by_role("heading", name="No sending domain yet")).to_be_visible()
    page.get_by_label("Domain you send from").fill("News.Example.com")
    page.get_by_role("button", name="Add domain").click()
    expect(page).to_have_url(re.compile(rf"/w/{slug}/sending/domains/\d+/$"))
    expect(page.get_by_role("heading", name="news.example.com")).to_be_visible()

    domain = SendingDomain.objects.get(domain="news.example.com")
    key = domain.dkim_keys.get()
    dkim_row = page.locator('[data-record="dkim:esp1"]')
    expect(dkim_row).to_contain_text("esp1._domainkey.news.example.com")
    dkim_row.get_by_role("button", name="Copy the value of the DKIM record").click()
    expect(dkim_row.get_by_role("button", name="Copy the value of the DKIM record")).to_have_class(
        re.compile(r"\bcopied\b")
    )
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == key.record_value
    page.locator('[data-record="spf"]').get_by_role(
        "button", name=re.compile("Copy the name")
    ).click()
    assert page.evaluate("navigator.clipboard.readText()") == "bounces.news.example.com"

    # Everything but DMARC published: each record shows its own state.
    publish(dns_server, domain, skip=["dmarc"])
    with page.expect_response(re.compile(r"/verify/$")) as response_info:
        page.get_by_role("button", name="Verify DNS records").click()
    assert response_info.value.request.headers.get("hx-request") == "true"
    expect(page.locator('[data-record="dmarc"] .record-state .badge')).to_have_text("missing")
    for record in ("dkim:esp1", "spf", "return_path", "tracking"):
        expect(page.locator(f'[data-record="{record}"] .record-state .badge')).to_have_text("pass")
    expect(page.locator("#domain-status")).to_have_text("Pending")
    page.screenshot(path=str(tmp_path / "records-missing.png"), full_page=True)

    publish(dns_server, domain)
    page.get_by_role("button", name="Verify DNS records").click()
    expect(page.locator("#domain-status")).to_have_text("Verified")
    expect(page.locator('[data-record="dmarc"] .record-state .badge')).to_have_text("pass")
    expect(page.get_by_role("status").filter(has_text="is verified")).to_be_visible()
    page.screenshot(path=str(tmp_path / "records-verified.png"), full_page=True)

    assert page.csp_violations == []
    assert (tmp_path / "records-verified.png").stat().st_size > 10_000
