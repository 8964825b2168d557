import time

import pytest
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import AuditEntry, Workspace
from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def totp_code(device: TOTPDevice, offset_steps: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + offset_steps * device.step
    return f"{totp.token():0{device.digits}d}"


def _login(client, email, password=TEST_PASSWORD, **extra):
    return client.post(LOGIN, {"email": email, "password": password, **extra})


def test_login_without_two_factor_goes_to_last_workspace(client):
    membership = MembershipFactory()
    response = _login(client, membership.user.email)
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.status_code == 302
    assert follow["Location"] == f"/w/{membership.workspace.slug}/"
    assert client.get(follow["Location"]).status_code == 200


def test_login_email_is_case_insensitive(client):
    user = UserFactory(email="mixed@example.com")
    response = _login(client, "MIXED@Example.com")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_wrong_password_shows_form_error(client):
    user = UserFactory()
    response = _login(client, user.email, "not the password")
    assert response.status_code == 200
    assert b"do not match an account" in response.content
    assert "_auth_user_id" not in client.session


def test_login_respects_safe_next_and_ignores_foreign_next(client):
    user = UserFactory()
    response = _login(client, user.email, next="/accounts/password/")
    assert response["Location"] == "/accounts/password/"
    client.logout()
    response = _login(client, user.email, next="https://evil.example/")
    assert response["Location"] == "/"


def test_login_with_two_factor_asks_for_code(client, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # the next test covers django-otp's own back-off
    membership = MembershipFactory()
    device = TOTPDevice.objects.create(user=membership.user, name="phone", confirmed=True)

    response = _login(client, membership.user.email)
    assert response["Location"] == reverse("accounts:login_verify")
    assert "_auth_user_id" not in client.session

    wrong = client.post(reverse("accounts:login_verify"), {"token": "000000"})
    assert wrong.status_code == 200
    assert b"not valid" in wrong.content
    assert "_auth_user_id" not in client.session

    right = client.post(reverse("accounts:login_verify"), {"token": totp_code(device)})
    assert right.status_code == 302
    assert client.session["_auth_user_id"] == str(membership.user.pk)
    assert client.get(f"/w/{membership.workspace.slug}/").status_code == 200


def test_right_code_right_after_a_wrong_one_says_wait(client):
    user = UserFactory()
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    _login(client, user.email)
    client.post(reverse("accounts:login_verify"), {"token": "000000"})
    response = client.post(reverse("accounts:login_verify"), {"token": totp_code(device)})
    assert b"Wait a few seconds" in response.content
    assert "_auth_user_id" not in client.session


def test_two_factor_step_without_password_step_redirects_to_login(client):
    response = client.get(reverse("accounts:login_verify"))
    assert response.status_code == 302
    assert response["Location"] == LOGIN


def test_two_factor_code_cannot_be_used_twice(client):
    user = UserFactory()
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    code = totp_code(device)
    _login(client, user.email)
    assert client.post(reverse("accounts:login_verify"), {"token": code}).status_code == 302
    client.post("/accounts/logout/")
    _login(client, user.email)
    replay = client.post(reverse("accounts:login_verify"), {"token": code})
    assert replay.status_code == 200
    assert "_auth_user_id" not in client.session


def test_enrolling_two_factor_then_signing_in_needs_the_code(client, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    user = UserFactory()
    client.force_login(user)
    page = client.get(reverse("accounts:two_factor"))
    assert page.status_code == 200
    assert b"data:image/svg+xml;base64," in page.content
    device = TOTPDevice.objects.get(user=user, confirmed=False)

    bad = client.post(reverse("accounts:two_factor"), {"token": "123456"})
    assert b"did not match" in bad.content
    ok = client.post(reverse("accounts:two_factor"), {"token": totp_code(device)})
    assert ok.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert AuditEntry.objects.filter(actor=user, verb="user.two_factor_enabled").exists()

    client.post("/accounts/logout/")
    response = _login(client, user.email)
    assert response["Location"] == reverse("accounts:login_verify")


def test_disabling_two_factor_needs_the_password(client):
    user = UserFactory()
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    _login(client, user.email)
    client.post(reverse("accounts:login_verify"), {"token": totp_code(device)})

    refused = client.post(reverse("accounts:two_factor"), {"password": "wrong"})
    assert b"not your password" in refused.content
    assert TOTPDevice.objects.filter(user=user).exists()
    client.post(reverse("accounts:two_factor"), {"password": TEST_PASSWORD})
    assert not TOTPDevice.objects.filter(user=user).exists()


def test_staff_without_two_factor_must_enrol_before_anything(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    workspace = MembershipFactory(user=staff).workspace
    _login(client, staff.email)
    for path in (f"/w/{workspace.slug}/", "/admin/", "/accounts/password/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == reverse("accounts:two_factor")
    assert client.get(reverse("accounts:two_factor")).status_code == 200


def test_staff_with_verified_two_factor_reaches_admin(client):
    staff = UserFactory(is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    _login(client, staff.email)
    client.post(reverse("accounts:login_verify"), {"token": totp_code(device)})
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/accounts/workspace/").status_code == 200


def test_staff_cannot_disable_two_factor(client):
    staff = UserFactory(is_staff=True)
    device = TOTPDevice.objects.create(user=staff, name="phone", confirmed=True)
    _login(client, staff.email)
    client.post(reverse("accounts:login_verify"), {"token": totp_code(device)})
    client.post(reverse("accounts:two_factor"), {"password": TEST_PASSWORD})
    assert TOTPDevice.objects.filter(user=staff).exists()


def test_admin_login_page_sends_to_the_one_sign_in_page(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)


def test_account_is_throttled_after_repeated_failures(client, settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    user = UserFactory()
    for _ in range(3):
        assert _login(client, user.email, "wrong").status_code == 200
    blocked = _login(client, user.email)  # the right password, too late
    assert blocked.status_code == 429
    assert b"Too many failed sign-in attempts" in blocked.content
    assert "_auth_user_id" not in client.session
    # Another account from the same address is not blocked by this account's failures.
    other = UserFactory()
    assert _login(client, other.email).status_code == 302


def test_client_address_is_throttled_across_accounts(client, settings):
    settings.LOGIN_FAILURES_PER_IP = 4
    settings.LOGIN_FAILURES_PER_ACCOUNT = 100
    users = [UserFactory() for _ in range(4)]
    for user in users:
        client.post(LOGIN, {"email": user.email, "password": "wrong"}, REMOTE_ADDR="203.0.113.9")
    fresh = UserFactory()
    blocked = client.post(
        LOGIN, {"email": fresh.email, "password": TEST_PASSWORD}, REMOTE_ADDR="203.0.113.9"
    )
    assert blocked.status_code == 429
    elsewhere = client.post(
        LOGIN, {"email": fresh.email, "password": TEST_PASSWORD}, REMOTE_ADDR="203.0.113.10"
    )
    assert elsewhere.status_code == 302


def test_two_factor_codes_count_against_the_account(client, settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    user = UserFactory()
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    _login(client, user.email)
    for _ in range(3):
        client.post(reverse("accounts:login_verify"), {"token": "000000"})
    blocked = client.post(reverse("accounts:login_verify"), {"token": totp_code(device)})
    assert blocked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only(client):
    user = UserFactory()
    client.force_login(user)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert "_auth_user_id" not in client.session


def test_signup_creates_user_and_pending_workspace(client):
    response = client.post(
        "/accounts/signup/",
        {
            "full_name": "Ada Lovelace",
            "email": "Ada@Example.org",
            "password": "analytical-engine-1843",
            "workspace_name": "Engines Weekly",
        },
    )
    assert response.status_code == 302
    workspace = Workspace.objects.get(name="Engines Weekly")
    assert workspace.status == Workspace.Status.PENDING_REVIEW
    assert response["Location"] == f"/w/{workspace.slug}/"
    membership = workspace.membership_set.get()
    assert membership.user.email == "ada@example.org"
    assert membership.role == "owner"
    page = client.get(response["Location"])
    assert b"waiting for review" in page.content
    assert AuditEntry.objects.filter(workspace=workspace, verb="workspace.created").exists()


def test_signup_refuses_weak_password_and_taken_email(client):
    UserFactory(email="taken@example.com")
    weak = client.post(
        "/accounts/signup/",
        {"full_name": "A", "email": "new@example.com", "password": "123", "workspace_name": "W"},
    )
    assert weak.status_code == 200
    assert b"too short" in weak.content
    taken = client.post(
        "/accounts/signup/",
        {
            "full_name": "A",
            "email": "TAKEN@example.com",
            "password": "a-long-enough-password-1",
            "workspace_name": "W",
        },
    )
    assert b"already exists" in taken.content
    assert not Workspace.objects.filter(name="W").exists()


def test_parallel_attempts_cannot_exceed_the_limit(settings):
    """Attempts are counted before they are checked, atomically in Redis."""
    import threading

    from accounts import throttles

    settings.LOGIN_FAILURES_PER_ACCOUNT = 5
    barrier, allowed = threading.Barrier(20), []

    def attempt():
        barrier.wait()
        allowed.append(throttles.login_attempt_begin(email="target@example.com", ip=None))

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 5
