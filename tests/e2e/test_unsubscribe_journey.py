"""Open an unsubscribe link from a mail, confirm, then see the change in the preference
center."""

import pytest
from playwright.sync_api import expect

from compliance.tokens import unsubscribe_token
from contacts.models import ConsentRecord, Subscription
from tests.factories import SubscriptionFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_unsubscribe_then_preference_center_shows_the_change(page, tmp_path):
    news = SubscriptionFactory(
        contact_list__name="Weekly news", contact__workspace__name="Acme Shoes"
    )
    offers = SubscriptionFactory(contact=news.contact, contact_list__name="Offers")
    token = unsubscribe_token(
        workspace_id=news.workspace_id,
        contact_id=news.contact_id,
        list_id=news.contact_list_id,
        campaign_id=12,
    )

    page.goto(f"/u/{token}")
    expect(page.get_by_role("heading", name="Unsubscribe")).to_be_visible()
    expect(page.locator(".public-brand")).to_contain_text("Acme Shoes")
    expect(page.locator(".public-card")).to_contain_text("Weekly news")
    page.screenshot(path=str(tmp_path / "unsubscribe-confirm.png"), full_page=True)
    # The GET alone changed nothing.
    news.refresh_from_db()
    assert news.status == Subscription.Status.SUBSCRIBED

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    news.refresh_from_db()
    assert news.status == Subscription.Status.UNSUBSCRIBED
    assert ConsentRecord.objects.get(contact_list=news.contact_list).campaign_id == 12

    page.get_by_role("link", name="Manage your preferences").click()
    expect(page.get_by_role("heading", name="Your email preferences")).to_be_visible()
    expect(page.get_by_role("checkbox", name="Weekly news")).not_to_be_checked()
    expect(page.get_by_role("checkbox", name="Offers")).to_be_checked()
    page.screenshot(path=str(tmp_path / "preferences.png"), full_page=True)

    # Switch news back on from the preference center.
    page.get_by_role("checkbox", name="Weekly news").check()
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_contain_text("Your preferences are saved")
    expect(page.get_by_role("checkbox", name="Weekly news")).to_be_checked()
    news.refresh_from_db(), offers.refresh_from_db()
    assert news.status == offers.status == Subscription.Status.SUBSCRIBED
    page.screenshot(path=str(tmp_path / "preferences-saved.png"), full_page=True)
    assert page.csp_violations == []
