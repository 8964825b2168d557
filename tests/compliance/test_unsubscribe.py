import pytest
from django.test import Client

from compliance.tokens import Purpose, preferences_token, token_make, unsubscribe_token
from contacts.models import ConsentRecord, Contact, Subscription, Suppression
from contacts.services.subscriptions import subscription_subscribe
from contacts.suppressions import may_send_to
from tests.compliance.test_tokens import YEAR, _signed_at
from tests.factories import ContactFactory, ContactListFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def subscription():
    return SubscriptionFactory(contact_list__name="Weekly news")


def _url(token: str) -> str:
    return f"/u/{token}"


def _one_click(url: str):
    """The POST exactly as Gmail sends it: no cookies, no CSRF token, a form body."""
    client = Client(enforce_csrf_checks=True)
    return client.post(url, data=ONE_CLICK, content_type="application/x-www-form-urlencoded")


def _token(subscription, **extra) -> str:
    return unsubscribe_token(
        workspace_id=subscription.workspace_id, contact_id=subscription.contact_id, **extra
    )


def test_one_click_post_as_gmail_sends_it_unsubscribes_and_answers_200(subscription):
    other = SubscriptionFactory(contact=subscription.contact)
    response = _one_click(_url(_token(subscription, campaign_id=77)))
    assert response.status_code == 200
    assert response.cookies == {} or "csrftoken" not in response.cookies
    assert len(response.content) < 100
    subscription.refresh_from_db(), other.refresh_from_db()
    assert subscription.status == other.status == Subscription.Status.UNSUBSCRIBED
    records = ConsentRecord.objects.filter(contact=subscription.contact)
    assert {r.action for r in records} == {ConsentRecord.Action.WITHDRAWN}
    assert {r.campaign_id for r in records} == {77}
    assert Suppression.objects.filter(
        workspace=subscription.workspace, reason=Suppression.Reason.UNSUBSCRIBED
    ).exists()
    # Effective immediately: the selector the send pipeline asks at claim time says no.
    assert not may_send_to(workspace=subscription.workspace, address=subscription.contact.email)


def test_one_click_with_a_list_leaves_only_that_list(subscription):
    other = SubscriptionFactory(contact=subscription.contact)
    token = _token(subscription, list_id=subscription.contact_list_id, campaign_id=5)
    assert _one_click(_url(token)).status_code == 200
    subscription.refresh_from_db(), other.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED
    assert other.status == Subscription.Status.SUBSCRIBED
    assert not Suppression.objects.exists()
    record = ConsentRecord.objects.get(contact=subscription.contact)
    assert (record.contact_list_id, record.campaign_id) == (subscription.contact_list_id, 5)


def test_second_one_click_changes_nothing_and_still_answers_200(subscription, row_counts):
    url = _url(_token(subscription))
    assert _one_click(url).status_code == 200
    before = row_counts()
    assert _one_click(url).status_code == 200
    assert row_counts() == before


def test_get_never_unsubscribes(subscription, row_counts):
    before = row_counts()
    response = Client().get(_url(_token(subscription)))
    assert response.status_code == 200
    html = response.content.decode()
    assert subscription.workspace.name in html
    assert subscription.contact.email in html
    assert "<form" in html
    assert "Unsubscribe</button>" in html
    assert "/p/" in html  # the preference center link
    assert row_counts() == before
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.SUBSCRIBED


def test_button_post_with_csrf_token_unsubscribes(subscription):
    client = Client(enforce_csrf_checks=True)
    url = _url(_token(subscription, list_id=subscription.contact_list_id))
    client.get(url)
    csrf = client.cookies["csrftoken"].value
    response = client.post(url, {"csrfmiddlewaretoken": csrf})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED


def test_button_post_without_csrf_token_is_refused(subscription, row_counts):
    before = row_counts()
    response = Client(enforce_csrf_checks=True).post(_url(_token(subscription)), {"x": "1"})
    assert response.status_code == 403
    assert row_counts() == before


def test_year_old_unsubscribe_link_still_works(subscription):
    token = _signed_at(
        YEAR,
        purpose=Purpose.UNSUBSCRIBE,
        workspace_id=subscription.workspace_id,
        contact_id=subscription.contact_id,
    )
    assert _one_click(_url(token)).status_code == 200
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.UNSUBSCRIBED


def _bad_tokens(subscription) -> dict[str, str]:
    good = _token(subscription)
    foreign_contact = ContactFactory()  # another workspace's contact, this workspace's id
    return {
        "truncated": good[:-3],
        "tampered": good[:-1] + ("A" if good[-1] != "A" else "B"),
        "forged": "1.1.0.0:1abcde:" + "A" * 43,
        "garbage": "%E2%98%83' OR 1=1--",
        "cross-purpose": preferences_token(
            workspace_id=subscription.workspace_id, contact_id=subscription.contact_id
        ),
        "foreign-workspace": token_make(
            purpose=Purpose.UNSUBSCRIBE,
            workspace_id=subscription.workspace_id,
            contact_id=foreign_contact.pk,
        ),
    }


@pytest.mark.parametrize(
    "kind", ["truncated", "tampered", "forged", "garbage", "cross-purpose", "foreign-workspace"]
)
@pytest.mark.parametrize("method", ["get", "one-click", "button"])
def test_bad_tokens_are_404_without_side_effects(
    subscription, kind, method, row_counts, django_assert_num_queries
):
    url = _url(_bad_tokens(subscription)[kind])
    before = row_counts()
    client = Client(enforce_csrf_checks=True)
    # Forged links never reach the database; a genuine token for a contact outside its
    # workspace costs exactly the one lookup that finds nothing.
    with django_assert_num_queries(1 if kind == "foreign-workspace" else 0):
        if method == "get":
            response = client.get(url)
        elif method == "one-click":
            response = _one_click(url)
        else:  # a valid CSRF pair, so the token alone decides
            client.cookies["csrftoken"] = "a" * 32
            response = client.post(url, {"csrfmiddlewaretoken": "a" * 32})
    assert response.status_code == 404
    html = response.content.decode()
    assert "This link is not valid" in html
    assert "Traceback" not in html
    assert row_counts() == before
    subscription.refresh_from_db()
    assert subscription.status == Subscription.Status.SUBSCRIBED


def test_global_unsubscribe_blocks_resubscribing_and_import(subscription):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from accounts.errors import ApplicationError
    from contacts.services.import_run import contact_import_run
    from contacts.services.imports import contact_import_start, contact_import_upload

    contact = subscription.contact
    workspace = subscription.workspace
    _one_click(_url(_token(subscription)))
    with pytest.raises(ApplicationError, match="suppression"):
        subscription_subscribe(
            contact=contact, contact_list=ContactListFactory(workspace=workspace), method="form"
        )
    # The contact is deleted by the marketer; an import of the address is refused.
    Contact.objects.filter(pk=contact.pk).delete()
    upload = SimpleUploadedFile(
        "people.csv", f"email\r\n{contact.email}\r\nnew@example.net\r\n".encode()
    )
    contact_import = contact_import_upload(workspace=workspace, upload=upload, acting_user=None)
    contact_import_start(
        contact_import=contact_import,
        mapping={"0": "email"},
        list_ids=[subscription.contact_list_id],
        update_existing=True,
        consent_basis="Signed up",
        consent_source="Shop",
        acting_user=None,
    )
    contact_import = contact_import_run(import_id=contact_import.pk)
    assert contact_import.skipped_count == 1
    emails = set(Contact.objects.filter(workspace=workspace).values_list("email", flat=True))
    assert "new@example.net" in emails
    assert contact.email not in emails
