"""A campaign from start to schedule in Chromium: pick a starter layout, write the body
while the preview follows, choose the audience, send a test to a real SMTP server on
loopback, and schedule it for nine tomorrow morning in the workspace's time zone.

The sending domain is verified the way a marketer's is: its records are published on the
loopback DNS server and checked, so the From address aligns with a domain that passed.
"""

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Role
from campaigns.models import Campaign
from campaigns.starters import starter_get
from sending.models import SendingDomain
from sending.services.domains import sending_domain_add, sending_domain_check
from tests.factories import (
    TEST_PASSWORD,
    ContactFactory,
    ContactListFactory,
    MembershipFactory,
    SubscriptionFactory,
)
from tests.sending.conftest import dns_server, publish  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BERLIN = "Europe/Berlin"
PREVIEW_FRAME = "#campaign-preview iframe"
BODY = (
    '<h1 class="greeting">Hello {{ first_name|default:"there" }},</h1>\n'
    '<p class="news">Our spring boots have landed.</p>\n'
    '<p><a href="https://trail.example/boots">See the range</a></p>'
)
TEST_ADDRESSES = ["sam.test@example.net", "kim.test@example.net"]


@pytest.fixture
def workspace_ready(dns_server, settings, live_server):  # noqa: F811
    """An editor of a Berlin workspace with a postal address, a domain verified through
    DNS, and a list with one subscribed contact."""
    settings.BASE_URL = live_server.url
    membership = MembershipFactory(
        role=Role.EDITOR,
        workspace__name="Trail Shop Co.",
        workspace__time_zone=BERLIN,
        workspace__postal_address="1 Trail Road\n10115 Berlin",
    )
    workspace = membership.workspace
    domain = sending_domain_add(workspace=workspace, domain="trail.example", acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    customers = ContactListFactory(workspace=workspace, name="Spring customers")
    SubscriptionFactory(
        contact=ContactFactory(workspace=workspace, email="ada@example.org", first_name="Ada"),
        contact_list=customers,
    )
    return membership


def _sign_in(page, membership) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(membership.user.email)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))


def _html_part(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def test_create_edit_preview_test_send_and_schedule_a_campaign(
    page, workspace_ready, smtp_sink, tmp_path
):
    membership = workspace_ready
    workspace = membership.workspace
    slug = workspace.slug
    _sign_in(page, membership)

    # 1. From the empty campaign list, a new campaign on the Announcement layout.
    page.goto(f"/w/{slug}/campaigns/")
    expect(page.get_by_role("heading", name="No campaigns yet")).to_be_visible()
    page.get_by_role("link", name="Create your first campaign").click()
    expect(page.get_by_role("heading", name="New campaign")).to_be_visible()
    page.get_by_label("Name").fill("Spring boots")
    page.get_by_role("radio", name=re.compile(r"^Announcement\b")).check()
    page.get_by_role("button", name="Create campaign").click()
    expect(page).to_have_url(re.compile(rf"/w/{slug}/campaigns/\d+/$"))
    expect(page.get_by_role("heading", name="Spring boots")).to_be_visible()
    campaign = Campaign.objects.get(workspace=workspace)
    announcement = starter_get("announcement")
    assert campaign.html == announcement.body
    assert campaign.template is not None
    assert campaign.template.html == announcement.html

    # The preview starts from the starter's sample body, rendered with sample values.
    frame = page.frame_locator(PREVIEW_FRAME)
    expect(frame.locator("h1")).to_have_text("Big news, Alex")

    # 2. Sender, subject and a new body: the preview follows what is typed, unsaved.
    page.get_by_label("Subject").fill('Spring boots for {{ first_name|default:"you" }}')
    page.get_by_label("Preheader").fill("Twelve styles, free returns")
    page.get_by_label("From name").fill("Trail Shop")
    page.get_by_label("From address").fill("news@trail.example")
    page.get_by_label("HTML body").fill(BODY)
    expect(frame.locator("p.news")).to_have_text("Our spring boots have landed.")
    expect(frame.locator("h1.greeting")).to_have_text("Hello Alex,")
    expect(page.locator(".inbox-subject")).to_have_text("Spring boots for Alex")
    expect(page.locator(".inbox-from")).to_have_text("Trail Shop")
    campaign.refresh_from_db()
    assert campaign.html == announcement.body  # the preview saved nothing
    assert campaign.subject == ""
    page.screenshot(path=str(tmp_path / "editor.png"))

    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Campaign saved.")).to_be_visible()
    campaign.refresh_from_db()
    assert campaign.html.replace("\r\n", "\n") == BODY  # browsers post textareas with CRLF
    assert (campaign.from_name, campaign.from_email) == ("Trail Shop", "news@trail.example")
    expect(frame.locator("p.news")).to_have_text("Our spring boots have landed.")

    # 3. Audience: ticking the list saves it and the count follows.
    page.locator(".campaign-tabs").get_by_role("link", name="Audience").click()
    expect(page.locator("#audience-matching")).to_have_text("0")  # the initial count landed
    send_to = page.get_by_role("group", name="Send to")
    send_to.get_by_role("checkbox", name=re.compile(r"^Spring customers")).check()
    expect(page.locator("#audience-count .audience-saved")).to_have_text("Saved.")
    expect(page.locator("#audience-matching")).to_have_text("1")
    expect(page.locator("#audience-sendable")).to_have_text("1")
    assert list(campaign.include_lists.values_list("name", flat=True)) == ["Spring customers"]

    # 4. Review & send: every check passes; a test goes to two addresses as Ada.
    page.locator(".campaign-tabs").get_by_role("link", name="Review & send").click()
    expect(page.get_by_role("heading", name="Pre-send checklist")).to_be_visible()
    expect(page.locator(".presend-badge-pass")).to_have_text("Ready to send")
    expect(page.locator(".presend-check.presend-fail")).to_have_count(0)
    expect(page.locator("#check-from_domain")).to_contain_text(
        "aligns with the verified domain trail.example"
    )
    expect(page.locator("#check-footer")).to_have_class(re.compile(r"\bpresend-pass\b"))
    expect(page.locator("#check-audience")).to_contain_text("1 recipient.")
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

    page.get_by_label("Addresses").fill(", ".join(TEST_ADDRESSES))
    page.get_by_label("With the data of").select_option(label="ada@example.org")
    page.get_by_role("button", name="Send test").click()
    expect(
        page.get_by_role("status").filter(
            has_text=f"Test on its way to {', '.join(TEST_ADDRESSES)}"
        )
    ).to_be_visible()
    assert len(smtp_sink.messages) == 2
    assert [rcpts for _, rcpts in smtp_sink.envelopes] == [[address] for address in TEST_ADDRESSES]
    for address in TEST_ADDRESSES:
        (message,) = smtp_sink.to(address)
        assert message["To"] == address
        assert message["Subject"] == "[Test] Spring boots for Ada"
        assert message["From"] == "Trail Shop <news@trail.example>"
        html = _html_part(message)
        assert "Hello Ada," in html
        assert "Our spring boots have landed." in html
        assert "{{" not in html
        text = message.get_body(preferencelist=("plain",)).get_content()
        assert "Hello Ada," in text
        assert "Our spring boots have landed." in text

    # 5. Schedule for 09:00 tomorrow, Berlin time.
    zone = ZoneInfo(BERLIN)
    tomorrow = timezone.localdate(timezone=zone) + timedelta(days=1)
    local = datetime.combine(tomorrow, time(9, 0), tzinfo=zone)
    shown = f"{local:%A} {local.day} {local:%B} {local.year}, 09:00 {local.tzname()}"
    page.get_by_role("radio", name="Schedule").check()
    page.get_by_label(f"Date ({BERLIN})").fill(tomorrow.isoformat())
    page.get_by_label(f"Time ({BERLIN})").fill("09:00")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(
        page.get_by_role("status").filter(has_text=f"Scheduled for {shown} ({BERLIN}).")
    ).to_be_visible()
    expect(page.locator(".review-scheduled")).to_have_text(f"Scheduled for {shown} ({BERLIN}).")
    expect(page.locator("h1 .badge")).to_have_text("Scheduled")
    expect(page.get_by_role("button", name="Reschedule")).to_be_visible()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.scheduled_at == local.astimezone(UTC)
    page.screenshot(path=str(tmp_path / "scheduled.png"), full_page=True)

    # The list shows it scheduled at the same local time.
    page.get_by_role("link", name="Campaigns", exact=True).first.click()
    row = page.locator(f"#campaign-{campaign.pk}")
    expect(row.locator(".badge")).to_have_text("Scheduled")
    expect(row.locator(".campaign-scheduled-at")).to_have_text(
        f"for {local.day} {local:%b} {local.year}, 09:00 {local.tzname()}"
    )

    # 6. Nothing on the way broke the page's CSP.
    assert page.csp_violations == []
