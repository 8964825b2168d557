import logging

import pytest
from django.test import Client

from compliance.tokens import preferences_token, unsubscribe_token
from contacts.models import ConsentRecord, Subscription, Suppression
from tests.factories import ContactListFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

UA = "Mozilla/5.0 (preferences test)"


@pytest.fixture
def news():
    return SubscriptionFactory(contact_list__name="News")


@pytest.fixture
def offers(news):
    return SubscriptionFactory(
        contact=news.contact, contact_list__name="Offers", status="unsubscribed"
    )


def _url(subscription) -> str:
    token = preferences_token(
        workspace_id=subscription.workspace_id, contact_id=subscription.contact_id
    )
    return f"/p/{token}"


def _client() -> Client:
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=UA)
    client.cookies["csrftoken"] = "c" * 32
    return client


def _post(url: str, **data):
    return _client().post(url, {"csrfmiddlewaretoken": "c" * 32, **data})


def test_page_shows_the_contacts_lists_with_their_state(news, offers):
    response = Client().get(_url(news))
    html = response.content.decode()
    assert response.status_code == 200
    assert news.workspace.name in html
    assert news.contact.email in html
    assert f'value="{news.contact_list_id}" checked' in html
    assert f'value="{offers.contact_list_id}">' in html
    assert "Unsubscribe from everything" in html
    other_list = ContactListFactory(workspace=news.workspace, name="Not theirs")
    assert other_list.name not in Client().get(_url(news)).content.decode()


def test_changes_are_recorded_as_consent(news, offers):
    response = _post(_url(news), lists=[str(offers.contact_list_id)])
    assert response.status_code == 302
    news.refresh_from_db(), offers.refresh_from_db()
    assert news.status == Subscription.Status.UNSUBSCRIBED
    assert offers.status == Subscription.Status.SUBSCRIBED
    granted = ConsentRecord.objects.get(contact_list=offers.contact_list)
    assert granted.action == ConsentRecord.Action.GRANTED
    assert granted.method == ConsentRecord.Method.FORM
    assert granted.user_agent == UA
    assert granted.ip == "127.0.0.1"
    withdrawn = ConsentRecord.objects.get(contact_list=news.contact_list)
    assert withdrawn.action == ConsentRecord.Action.WITHDRAWN
    assert "saved" in Client().get(response.url).content.decode()


def test_global_opt_out_leaves_everything_and_suppresses(news, offers):
    response = _post(_url(news), action="unsubscribe_all")
    assert response.status_code == 302
    news.refresh_from_db()
    assert news.status == Subscription.Status.UNSUBSCRIBED
    assert (
        Suppression.objects.filter(
            workspace=news.workspace, reason=Suppression.Reason.UNSUBSCRIBED
        ).count()
        == 1
    )
    html = Client().get(response.url).content.decode()
    assert "unsubscribed from all email" in html
    assert "disabled" in html


def test_list_of_another_workspace_is_ignored_and_logged(news, caplog):
    foreign = SubscriptionFactory(contact_list__name="Foreign")
    with caplog.at_level(logging.WARNING, logger="compliance.services"):
        _post(_url(news), lists=[str(news.contact_list_id), str(foreign.contact_list_id), "x"])
    assert "not theirs" in caplog.text
    foreign.refresh_from_db()
    assert foreign.status == Subscription.Status.SUBSCRIBED
    assert not ConsentRecord.objects.filter(contact_list=foreign.contact_list).exists()
    assert not Subscription.objects.filter(
        contact=news.contact, contact_list=foreign.contact_list
    ).exists()


def test_post_without_csrf_is_refused(news):
    response = Client(enforce_csrf_checks=True).post(_url(news), {"action": "unsubscribe_all"})
    assert response.status_code == 403
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_unsubscribe_token_is_not_a_preference_token(news, method, django_assert_num_queries):
    token = unsubscribe_token(workspace_id=news.workspace_id, contact_id=news.contact_id)
    with django_assert_num_queries(0):
        if method == "get":
            response = Client().get(f"/p/{token}")
        else:
            response = _post(f"/p/{token}", action="unsubscribe_all")
    assert response.status_code == 404
    assert not Suppression.objects.exists()


def test_data_request_link_appears_once_the_view_exists(news):
    from django.urls import NoReverseMatch, reverse

    token = _url(news).rsplit("/", 1)[1]
    html = Client().get(_url(news)).content.decode()
    try:
        gdpr_url = reverse("compliance:gdpr_request", kwargs={"token": token})
    except NoReverseMatch:
        assert "data export or erasure" not in html
    else:
        assert gdpr_url in html
