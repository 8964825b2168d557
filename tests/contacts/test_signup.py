"""Public signup forms, the service: double opt-in through a real SMTP server on loopback,
limits in the real Redis, consent in the real PostgreSQL."""

import re
import secrets
import time

import pytest
import redis
from django.core import signing

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from accounts.tokens import invitation_token_make
from contacts.models import ConsentRecord, Contact, Subscription
from contacts.services import signup as services
from contacts.services.suppressions import suppression_add
from contacts.signup import signup_form_counts, signup_form_url
from contacts.suppressions import address_hash
from contacts.tokens import ConfirmationExpired, confirmation_token_make, confirmation_token_read
from tests.conftest import redis_test_url
from tests.contacts.signup_factories import SignupFormFactory
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    MembershipFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


@pytest.fixture
def form():
    return SignupFormFactory()


def _unique_ip() -> str:
    """A client address of this test alone (suites running side by side share Redis)."""
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


def _submit(form, email="hiker@example.org", *, ip="198.51.100.7", **extra):
    values = {"consent_given": True, "user_agent": BROWSER, **extra}
    return services.signup_submit(form=form, email=email, ip=ip, **values)


def _confirm_link(message) -> str:
    body = message.get_body(("plain",)).get_content()
    return re.search(r"http://testserver(/f/confirm/[^/\s]+/)", body).group(1)


def _token(link: str) -> str:
    return link.removeprefix("/f/confirm/").rstrip("/")


def test_double_opt_in_submission_creates_pending_subscription_and_mails_signed_link(
    form, smtp_sink, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form, "Hiker@Example.ORG", first_name="Ada", last_name="Lovelace")

    assert outcome is services.SignupOutcome.CONFIRMATION_SENT
    contact = Contact.objects.get(workspace=form.workspace)
    assert (contact.email, contact.first_name, contact.last_name) == (
        "Hiker@example.org",
        "Ada",
        "Lovelace",
    )
    subscription = Subscription.objects.get(contact=contact, contact_list=form.contact_list)
    assert subscription.status == Subscription.Status.PENDING
    granted = ConsentRecord.objects.get(contact=contact)
    assert (granted.action, granted.method) == ("granted", "form")
    assert (granted.ip, granted.user_agent) == ("198.51.100.7", BROWSER)
    assert granted.consent_text == form.consent_text
    assert granted.source == f"http://testserver/f/{form.public_id}/"

    [message] = smtp_sink.to("Hiker@example.org")
    assert form.workspace.name in message["Subject"]
    assert message.get_body(("html",)) is not None
    claim = confirmation_token_read(_token(_confirm_link(message)))
    assert claim.subscription_id == subscription.pk
    assert claim.form_id == form.pk


def test_confirmation_subscribes_and_records_ip_and_user_agent(
    form, smtp_sink, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _submit(form)
    claim = confirmation_token_read(_token(_confirm_link(smtp_sink.messages[0])))

    subscription = services.signup_confirm(
        claim=claim, ip="203.0.113.9", user_agent="Thunderbird/128"
    )

    assert subscription.status == Subscription.Status.SUBSCRIBED
    assert subscription.subscribed_at is not None
    confirmed = ConsentRecord.objects.get(action="confirmed")
    assert (confirmed.ip, confirmed.user_agent) == ("203.0.113.9", "Thunderbird/128")
    assert confirmed.method == "form"
    assert confirmed.source == signup_form_url(form=form)
    # Confirming twice changes nothing and records nothing more.
    services.signup_confirm(claim=claim, ip="203.0.113.9", user_agent="Thunderbird/128")
    assert ConsentRecord.objects.filter(action="confirmed").count() == 1


def test_single_opt_in_list_subscribes_at_once_without_mail(
    smtp_sink, django_capture_on_commit_callbacks
):
    form = SignupFormFactory(contact_list__opt_in="single")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form)
    assert outcome is services.SignupOutcome.SUBSCRIBED
    assert Subscription.objects.get().status == Subscription.Status.SUBSCRIBED
    assert smtp_sink.messages == []


def test_honeypot_submission_writes_nothing_and_sends_nothing(
    form, smtp_sink, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form, honeypot="http://spam.example")
    assert outcome is services.SignupOutcome.IGNORED
    assert not Contact.objects.exists()
    assert not ConsentRecord.objects.exists()
    assert smtp_sink.messages == []


def test_ip_limit_refuses_submissions_over_the_limit_in_the_window(form, settings):
    settings.SIGNUP_SUBMISSIONS_PER_IP = 3
    ip = _unique_ip()
    for number in range(3):
        _submit(form, f"person{number}@example.org", ip=ip)
    with pytest.raises(services.SignupThrottled):
        _submit(form, "person3@example.org", ip=ip)
    # Honeypot and invalid submissions count too: a bot cannot probe for free.
    with pytest.raises(services.SignupThrottled):
        _submit(form, "not an address", ip=ip)
    assert Contact.objects.count() == 3
    # Another client is not affected.
    assert _submit(form, "other@example.org", ip=_unique_ip()) is not None


def test_ip_limit_window_is_kept_in_redis_and_expires(form, settings):
    settings.SIGNUP_SUBMISSIONS_PER_IP = 1
    settings.SIGNUP_SUBMISSION_WINDOW_SECONDS = 1
    ip = _unique_ip()
    _submit(form, "first@example.org", ip=ip)
    with pytest.raises(services.SignupThrottled):
        _submit(form, "second@example.org", ip=ip)
    time.sleep(1.1)
    _submit(form, "third@example.org", ip=ip)


def test_at_most_one_confirmation_mail_per_address_per_day(
    smtp_sink, django_capture_on_commit_callbacks, settings
):
    form = SignupFormFactory()
    other_workspace_form = SignupFormFactory()
    victim = f"victim-{secrets.token_hex(4)}@example.org"
    with django_capture_on_commit_callbacks(execute=True):
        first = _submit(form, victim, ip=_unique_ip())
        again = _submit(form, victim.upper(), ip=_unique_ip())
        elsewhere = _submit(other_workspace_form, victim, ip=_unique_ip())

    assert first is services.SignupOutcome.CONFIRMATION_SENT
    assert again is elsewhere is services.SignupOutcome.CONFIRMATION_HELD
    assert len(smtp_sink.messages) == 1
    # The hold is a Redis key that expires after the interval and never names the address.
    client = redis.Redis.from_url(redis_test_url())
    [key] = client.keys(f"*signup-confirmation:{address_hash(victim)}")
    assert b"victim" not in key.lower()
    assert settings.SIGNUP_CONFIRMATION_INTERVAL_SECONDS - 60 < client.ttl(key) <= 86400

    client.delete(key)  # a day later
    with django_capture_on_commit_callbacks(execute=True):
        assert _submit(form, victim, ip=_unique_ip()) is services.SignupOutcome.CONFIRMATION_SENT
    assert len(smtp_sink.messages) == 2


def test_suppressed_address_gets_no_mail_and_no_subscription(
    form, smtp_sink, django_capture_on_commit_callbacks
):
    suppression_add(workspace=None, email="gone@example.org", reason="complaint", acting_user=None)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form, "Gone@Example.org")
    assert outcome is services.SignupOutcome.IGNORED
    assert not Contact.objects.exists()
    assert not Subscription.objects.exists()
    assert smtp_sink.messages == []


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_inactive_contact_gets_no_mail_and_no_subscription(
    form, status, smtp_sink, django_capture_on_commit_callbacks
):
    ContactFactory(workspace=form.workspace, email="left@example.org", status=status)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form, "LEFT@example.org")
    assert outcome is services.SignupOutcome.IGNORED
    assert not Subscription.objects.exists()
    assert not ConsentRecord.objects.exists()
    assert smtp_sink.messages == []


def test_already_subscribed_address_gets_no_mail_and_no_new_consent(
    form, smtp_sink, django_capture_on_commit_callbacks
):
    contact = ContactFactory(workspace=form.workspace, email="fan@example.org")
    SubscriptionFactory(contact=contact, contact_list=form.contact_list, status="subscribed")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form, "fan@example.org")
    assert outcome is services.SignupOutcome.ALREADY_SUBSCRIBED
    assert not ConsentRecord.objects.exists()
    assert smtp_sink.messages == []


def test_person_who_left_a_single_opt_in_list_comes_back_only_by_confirming(
    smtp_sink, django_capture_on_commit_callbacks
):
    form = SignupFormFactory(contact_list__opt_in="single")
    contact = ContactFactory(workspace=form.workspace, email="back@example.org")
    SubscriptionFactory(contact=contact, contact_list=form.contact_list, status="unsubscribed")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = _submit(form, "back@example.org")
    assert outcome is services.SignupOutcome.CONFIRMATION_SENT
    assert Subscription.objects.get().status == Subscription.Status.PENDING
    assert len(smtp_sink.to("back@example.org")) == 1


def test_known_contact_name_is_not_changed_by_a_public_submission(form):
    ContactFactory(
        workspace=form.workspace, email="known@example.org", first_name="Real", last_name="Name"
    )
    _submit(form, "known@example.org", first_name="Mallory", last_name="Prank")
    contact = Contact.objects.get()
    assert (contact.first_name, contact.last_name) == ("Real", "Name")


def test_invalid_address_and_missing_consent_are_refused_before_any_write(form):
    with pytest.raises(ApplicationError) as error:
        _submit(form, "no-at-sign.example.org")
    assert error.value.extra["field"] == "email"
    with pytest.raises(ApplicationError) as error:
        _submit(form, "fine@example.org", consent_given=False)
    assert error.value.extra["field"] == "consent"
    assert not Contact.objects.exists()


def test_confirmation_of_a_subscription_unsubscribed_since_is_refused(form):
    _submit(form)
    subscription = Subscription.objects.get()
    Subscription.objects.filter(pk=subscription.pk).update(status="unsubscribed")
    claim = confirmation_token_read(
        confirmation_token_make(subscription_id=subscription.pk, form_id=form.pk)
    )
    with pytest.raises(ApplicationError):
        services.signup_confirm(claim=claim, ip=None, user_agent="")
    assert not ConsentRecord.objects.filter(action="confirmed").exists()


def test_confirmation_token_round_trip_and_forgeries():
    token = confirmation_token_make(subscription_id=42, form_id=7)
    assert re.fullmatch(r"[A-Za-z0-9_\-.:]+", token)  # URL-safe
    claim = confirmation_token_read(token)
    assert (claim.subscription_id, claim.form_id) == (42, 7)

    value, _, signature = token.rpartition(":")
    assert confirmation_token_read(f"{value}:{signature[:-1]}x") is None
    assert confirmation_token_read(token.replace("42.", "43.", 1)) is None
    assert confirmation_token_read("garbage") is None
    assert confirmation_token_read("") is None
    # Signed by the same key for another purpose: a different salt, so not accepted.
    assert confirmation_token_read(invitation_token_make(invitation_id=42)) is None
    other_salt = signing.TimestampSigner(salt="contacts.other").sign("42.7")
    assert confirmation_token_read(other_salt) is None


def test_confirmation_token_expires(settings):
    token = confirmation_token_make(subscription_id=42, form_id=None)
    settings.SIGNUP_CONFIRMATION_MAX_AGE_SECONDS = -1
    with pytest.raises(ConfirmationExpired):
        confirmation_token_read(token)


def test_form_counts_come_from_the_consent_records(form):
    _submit(form, "a@example.org")
    _submit(form, "b@example.org")
    claim = confirmation_token_read(
        confirmation_token_make(subscription_id=Subscription.objects.first().pk, form_id=form.pk)
    )
    services.signup_confirm(claim=claim, ip=None, user_agent="")
    other = SignupFormFactory(workspace=form.workspace, contact_list=form.contact_list)
    counts = signup_form_counts(workspace=form.workspace, forms=[form, other])
    assert counts == {
        form.pk: {"submitted": 2, "confirmed": 1},
        other.pk: {"submitted": 0, "confirmed": 0},
    }


def test_form_changes_are_audited_and_stay_in_the_workspace():
    workspace = WorkspaceFactory()
    editor = MembershipFactory(workspace=workspace, role=Role.EDITOR).user
    own_list = ContactListFactory(workspace=workspace)
    foreign_list = ContactListFactory()

    with pytest.raises(ApplicationError):
        services.signup_form_create(
            workspace=workspace, acting_user=editor, name="Bad", contact_list=foreign_list
        )
    form = services.signup_form_create(
        workspace=workspace, acting_user=editor, name="Footer", contact_list=own_list
    )
    assert len(form.public_id) >= 16
    services.signup_form_update(form=form, acting_user=editor, title="New title")
    with pytest.raises(ApplicationError):
        services.signup_form_update(form=form, acting_user=editor, contact_list=foreign_list)
    services.signup_form_delete(form=form, acting_user=editor)
    verbs = list(
        AuditEntry.objects.filter(workspace=workspace).order_by("id").values_list("verb", flat=True)
    )
    assert verbs == ["signup_form.created", "signup_form.updated", "signup_form.deleted"]
