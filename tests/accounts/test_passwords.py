import re

import pytest

from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_password_reset_mail_goes_over_smtp_and_link_sets_password(
    client, smtp_sink, settings, django_capture_on_commit_callbacks
):
    settings.BASE_URL = "https://esp.example"
    user = UserFactory(email="forgetful@example.com")
    with django_capture_on_commit_callbacks(execute=True):
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


def test_password_reset_for_unknown_address_sends_nothing_and_says_the_same(
    client, smtp_sink, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response["Location"] == "/accounts/password/reset/sent/"
    assert smtp_sink.messages == []


def test_password_resets_are_rate_limited_per_address(
    client, smtp_sink, settings, django_capture_on_commit_callbacks
):
    settings.PASSWORD_RESETS_PER_ADDRESS_PER_HOUR = 2
    UserFactory(email="popular@example.com")
    for _ in range(4):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/accounts/password/reset/", {"email": "popular@example.com"})
        assert response["Location"] == "/accounts/password/reset/sent/"
    assert len(smtp_sink.to("popular@example.com")) == 2


def test_password_reset_is_queued_for_the_transactional_worker(
    client, smtp_sink, django_capture_on_commit_callbacks
):
    """The request only enqueues: a slow or dead mail server cannot stall or reveal anything."""
    import json

    import redis

    from espsite.celery import app
    from tests.conftest import redis_test_url

    UserFactory(email="queued@example.com")
    app.conf.task_always_eager = False
    try:
        with django_capture_on_commit_callbacks(execute=True):
            client.post("/accounts/password/reset/", {"email": "queued@example.com"})
    finally:
        app.conf.task_always_eager = True
    assert smtp_sink.messages == []
    [raw] = redis.Redis.from_url(redis_test_url()).lrange("transactional", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "accounts.tasks.system_mail_send_task"


def test_reset_password_of_two_factor_user_still_asks_for_the_code(
    client, smtp_sink, django_capture_on_commit_callbacks
):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = UserFactory(email="careful@example.com")
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/password/reset/", {"email": "careful@example.com"})
    body = smtp_sink.to("careful@example.com")[0].get_body(("plain",)).get_content()
    path = re.search(r"http://testserver(/accounts/password/reset/\S+/)", body).group(1)
    set_url = client.get(path, follow=True).redirect_chain[-1][0]
    client.post(set_url, {"new_password1": "n3w-passphrase!", "new_password2": "n3w-passphrase!"})
    assert "_auth_user_id" not in client.session  # a reset never signs in by itself
    response = client.post(
        "/accounts/login/", {"email": "careful@example.com", "password": "n3w-passphrase!"}
    )
    assert response["Location"] == "/accounts/login/verify/"
    assert "_auth_user_id" not in client.session


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
