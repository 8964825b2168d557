import re

import pytest

from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_password_reset_mail_goes_over_smtp_and_link_sets_password(client, smtp_sink, settings):
    settings.BASE_URL = "https://esp.example"
    user = UserFactory(email="forgetful@example.com")
    response = client.post("/accounts/password/reset/", {"email": "Forgetful@Example.com"})
    assert response["Location"] == "/accounts/password/reset/sent/"

    [message] = smtp_sink.to("forgetful@example.com")
    assert message["Subject"] == "Reset your ESP password"
    body = message.get_body(("plain",)).get_content()
    # Built from BASE_URL, never from the request's Host header.
    path = re.search(r"https://esp\.example(/accounts/password/reset/\S+/)", body).group(1)

    form_page = client.get(path, follow=True)
    assert b"Choose a new password" in form_page.content
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(
        set_url,
        {"new_password1": "a-brand-new-passphrase", "new_password2": "a-brand-new-passphrase"},
    )
    assert done["Location"] == "/accounts/password/reset/complete/"
    user.refresh_from_db()
    assert user.check_password("a-brand-new-passphrase")


def test_password_reset_for_unknown_address_sends_nothing_and_says_the_same(client, smtp_sink):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert smtp_sink.messages == []


def test_password_change(client):
    user = UserFactory()
    client.force_login(user)
    wrong = client.post(
        "/accounts/password/",
        {
            "old_password": "nope",
            "new_password1": "x-new-pass-123",
            "new_password2": "x-new-pass-123",
        },
    )
    assert wrong.status_code == 200
    ok = client.post(
        "/accounts/password/",
        {
            "old_password": TEST_PASSWORD,
            "new_password1": "x-new-pass-123",
            "new_password2": "x-new-pass-123",
        },
    )
    assert ok.status_code == 302
    user.refresh_from_db()
    assert user.check_password("x-new-pass-123")
