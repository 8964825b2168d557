import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import Invitation
from espsite.management.commands.seed_demo import demo_password

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_demo_user_signs_in_switches_workspace_and_signs_out(page, tmp_path, settings):
    call_command("seed_demo", force=True)

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Email").fill("demo@example.com")
    page.get_by_label("Password").fill(demo_password())
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(re.compile(r"/w/(demo|acme)/$"))
    expect(page.get_by_role("heading", name="Getting started")).to_be_visible()
    page.goto("/w/demo/")
    expect(page.get_by_role("navigation", name="Workspace")).to_contain_text("Campaigns")
    expect(page.locator(".switcher-name")).to_have_text("Demo Outdoor Co.")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    page.locator(".switcher summary").click()
    page.get_by_role("menuitem", name=re.compile("Acme Newsletters")).click()
    expect(page).to_have_url(re.compile(r"/w/acme/$"))
    expect(page.locator(".switcher-name")).to_have_text("Acme Newsletters")
    page.screenshot(path=str(tmp_path / "switched.png"), full_page=True)

    page.locator(".user-menu summary").click()
    page.get_by_role("menuitem", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto("/w/demo/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/w/demo/"))

    assert page.csp_violations == []
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_htmx_invite_works_under_the_production_csp(page, tmp_path):
    call_command("seed_demo", force=True)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill("demo@example.com")
    page.get_by_label("Password").fill(demo_password())
    page.get_by_role("button", name="Sign in").click()
    page.goto("/w/demo/settings/members/")

    page.get_by_label("Email").fill("teammate@example.com")
    page.locator("#id_role").select_option("viewer")
    with page.expect_response(re.compile(r"/settings/members/invite/$")) as response_info:
        page.get_by_role("button", name="Send invitation").click()
    response = response_info.value
    assert response.status == 200
    assert response.request.headers.get("hx-request") == "true"  # swapped by htmx, no reload
    expect(page.locator("#members-panel")).to_contain_text("teammate@example.com")
    expect(page.get_by_role("status").filter(has_text="Invitation sent")).to_be_visible()
    page.screenshot(path=str(tmp_path / "members.png"), full_page=True)
    assert Invitation.objects.filter(email="teammate@example.com", role="viewer").exists()
    assert page.csp_violations == []
