"""A campaign's report in Chromium: from the Reports list to the report of a sent A/B
campaign with human and machine activity, its figures, the server-drawn chart (and the
table behind it), the links, the providers and the winner, under the production CSP."""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import Role
from tests.factories import TEST_PASSWORD, MembershipFactory
from tests.tracking.report_seed import LINKS, report_campaign_seed

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_marketer_reads_a_sent_campaigns_report(page, tmp_path):
    membership = MembershipFactory(role=Role.VIEWER, workspace__time_zone="Europe/Berlin")
    slug = membership.workspace.slug
    seeded = report_campaign_seed(membership.workspace)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(membership.user.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.goto(f"/w/{slug}/reports/")
    expect(page.get_by_role("heading", name="Reports")).to_be_visible()
    page.get_by_role("link", name="Spring sale").click()
    expect(page).to_have_url(re.compile(rf"/w/{slug}/reports/campaigns/{seeded.campaign.pk}/$"))
    expect(page.get_by_role("heading", name=re.compile("Spring sale"))).to_be_visible()

    expect(page.locator('[data-fact="delivered_rate"]')).to_have_text("69.6%")
    expect(page.locator('[data-fact="open_rate"]')).to_have_text("75.0%")
    expect(page.locator('[data-fact="unique_human_opens"]')).to_have_text("10")

    # The chart: drawn on the server, named for screen readers, with bars for both series.
    opens_chart = page.locator('[data-chart="opens"] svg')
    expect(opens_chart).to_be_visible()
    expect(opens_chart).to_have_attribute("role", "img")
    expect(opens_chart).to_have_attribute("aria-label", re.compile(r"^Opens per hour, All"))
    assert opens_chart.locator("rect.chart-total").count() >= 5
    assert opens_chart.locator("rect.chart-human").count() >= 5
    box = opens_chart.bounding_box()
    assert box["width"] > 500
    assert box["height"] > 100
    # Its figures as a table, folded away until asked for.
    table = page.locator("details.report-data table")
    expect(table).to_be_hidden()
    page.get_by_text("The figures as a table").click()
    expect(table).to_be_visible()

    links = page.locator("table.report-links tbody tr")
    expect(links).to_have_count(3)
    expect(links.first).to_contain_text(LINKS[0])
    expect(page.locator('table.report-providers [data-provider="google"]')).to_contain_text(
        "Google"
    )
    expect(page.locator("tr.report-winner")).to_contain_text("Variant B")

    screenshot = tmp_path / "campaign-report.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.exists()
    assert screenshot.stat().st_size > 10_000
    assert page.csp_violations == []
