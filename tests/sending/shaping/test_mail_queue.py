"""The mail queue's hold and release per provider, and its "held" and "warming" groups
(read from the shaper's warm-up refusals in Redis, sending/queue_state.py)."""

import datetime as dt
import itertools
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEntry
from campaigns.models import Campaign
from sending import throttle
from sending.models import Delivery, ProviderLimit
from sending.queue_state import warming_wait_record, warming_waits
from tests.factories import UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

QUEUE = "/admin/sending/mail-queue/"
HOLD = "/admin/sending/mail-queue/hold/"
RELEASE = "/admin/sending/mail-queue/release/"

_serial = itertools.count()


def _campaign(workspace=None) -> Campaign:
    return Campaign.objects.create(
        workspace=workspace or WorkspaceFactory(),
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        from_email="news@shop.test",
        status=Campaign.Status.SENDING,
    )


def _deliveries(campaign, n, *, provider, state, **fields) -> None:
    for _ in range(n):
        Delivery.objects.create(
            workspace_id=campaign.workspace_id,
            campaign=campaign,
            address=f"q{next(_serial)}@{provider or 'other'}.test",
            state=state,
            provider=provider,
            lease_token=uuid.uuid4() if state in ("claimed", "in_flight") else None,
            **fields,
        )


def _limits() -> dict[str, tuple]:
    return {
        limit.provider: (limit.is_held, limit.held_reason, limit.held_at)
        for limit in ProviderLimit.objects.all()
    }


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def _counts(page) -> dict[str, dict[str, int]]:
    return {
        row.provider: {reason: count for reason, count in row.reason_counts() if count}
        for row, _age in page.context["rows"]
    }


# --- hold and release ------------------------------------------------------------------


def test_hold_holds_that_provider_alone_shows_it_and_is_audited(operator_client):
    before = _limits()

    response = operator_client.post(
        HOLD, {"provider": "google", "reason": "  421 4.7.28 rate limited  "}, follow=True
    )

    assert response.status_code == 200
    assert _messages(response) == [
        "Google (Gmail, Workspace) held: nothing is sent to it until released."
    ]
    after = _limits()
    held, reason, held_at = after.pop("google")
    assert (held, reason) == (True, "421 4.7.28 rate limited")
    assert timezone.now() - held_at < dt.timedelta(minutes=1)
    before.pop("google")
    assert after == before  # no other provider changed
    entry = AuditEntry.objects.get(verb="provider.held")
    assert (entry.actor, entry.workspace) == (operator_client.user, None)
    assert entry.target_type == "sending.ProviderLimit"
    assert entry.details == {"provider": "google", "reason": "421 4.7.28 rate limited"}
    text = response.content.decode()
    google = re.search(r'<tr data-provider="google" data-held="true">.*?</tr>', text, re.S)
    assert google is not None
    assert "421 4.7.28 rate limited" in google.group(0)
    assert 'value="Release"' in google.group(0)
    assert text.count('value="Release"') == 1
    assert text.count('value="Hold"') == len(before)  # every other known provider


def test_holding_a_held_provider_again_replaces_the_reason_and_keeps_the_start(operator_client):
    operator_client.post(HOLD, {"provider": "yahoo", "reason": "first"})
    first_at = ProviderLimit.objects.get(provider="yahoo").held_at

    operator_client.post(HOLD, {"provider": "yahoo", "reason": "second"})

    limit = ProviderLimit.objects.get(provider="yahoo")
    assert (limit.is_held, limit.held_reason, limit.held_at) == (True, "second", first_at)


def test_release_clears_the_hold_and_is_audited(operator_client):
    operator_client.post(HOLD, {"provider": "microsoft", "reason": "block"}, follow=True)

    response = operator_client.post(RELEASE, {"provider": "microsoft"}, follow=True)

    assert _messages(response) == [
        "Microsoft (Outlook.com, Office 365) released: its waiting mail goes again."
    ]
    limit = ProviderLimit.objects.get(provider="microsoft")
    assert (limit.is_held, limit.held_reason, limit.held_at) == (False, "", None)
    entry = AuditEntry.objects.get(verb="provider.released")
    assert entry.actor == operator_client.user
    assert entry.details["provider"] == "microsoft"
    assert entry.details["reason"] == "block"
    assert 'data-held="true"' not in response.content.decode()


def test_a_missing_limit_row_is_created_by_the_hold(operator_client):
    ProviderLimit.objects.filter(provider="gmx").delete()

    operator_client.post(HOLD, {"provider": "gmx", "reason": "maintenance"})

    assert ProviderLimit.objects.get(provider="gmx").is_held


@pytest.mark.parametrize(
    ("url", "data", "message"),
    [
        (HOLD, {"provider": "hotmail", "reason": "x"}, "Unknown provider: hotmail."),
        (HOLD, {"provider": "", "reason": "x"}, "Unknown provider: (blank)."),
        (RELEASE, {"provider": "hotmail"}, "Unknown provider: hotmail."),
        (HOLD, {"provider": "google", "reason": "   "}, "Say why the provider is held"),
        (HOLD, {"provider": "google", "reason": "x" * 301}, "Keep the reason under 300"),
        (RELEASE, {"provider": "google"}, "Google (Gmail, Workspace) is not held."),
    ],
)
def test_refused_holds_and_releases_change_nothing_and_say_why(operator_client, url, data, message):
    before = _limits()

    response = operator_client.post(url, data, follow=True)

    assert response.status_code == 200
    [shown] = _messages(response)
    assert shown.startswith(message)
    assert _limits() == before
    assert not ProviderLimit.objects.filter(provider="hotmail").exists()
    assert not AuditEntry.objects.filter(verb__startswith="provider.").exists()


def test_hold_and_release_are_posts_for_verified_staff_only():
    client = Client()
    client.force_login(UserFactory(is_staff=False))

    response = client.post(HOLD, {"provider": "google", "reason": "x"})

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not ProviderLimit.objects.get(provider="google").is_held


def test_hold_is_a_post(operator_client):
    assert operator_client.get(HOLD).status_code == 405
    assert operator_client.get(RELEASE).status_code == 405


# --- held and warming groups -----------------------------------------------------------


def test_held_and_warming_rows_are_grouped_apart(operator_client):
    now = timezone.now()
    today = timezone.localdate()
    refused, other = _campaign(), _campaign()
    # Google, held: queued and due deferred rows are "held"; the rest keep their reason.
    _deliveries(refused, 3, provider="google", state="queued",
                created_at=now - dt.timedelta(hours=1))  # fmt: skip
    _deliveries(other, 1, provider="google", state="deferred",
                next_attempt_at=now - dt.timedelta(minutes=5))  # fmt: skip
    _deliveries(other, 2, provider="google", state="deferred",
                next_attempt_at=now + dt.timedelta(hours=1))  # fmt: skip
    _deliveries(other, 1, provider="google", state="in_flight")
    _deliveries(other, 2, provider="google", state="holding")
    # Yahoo: a warm-up cap refused `refused` today; `other` was refused only yesterday.
    _deliveries(refused, 4, provider="yahoo", state="queued")
    _deliveries(other, 5, provider="yahoo", state="queued")
    _deliveries(refused, 1, provider="yahoo", state="deferred", next_attempt_at=now)
    # Microsoft: `refused` waits for Yahoo's room, not Microsoft's.
    _deliveries(refused, 6, provider="microsoft", state="queued")
    warming_wait_record(provider="yahoo", campaign_id=refused.pk, day=today)
    warming_wait_record(provider="yahoo", campaign_id=other.pk, day=today - dt.timedelta(days=1))
    warming_wait_record(provider="google", campaign_id=refused.pk, day=today)  # held wins
    operator_client.post(HOLD, {"provider": "google", "reason": "block"})

    page = operator_client.get(QUEUE)

    counts = _counts(page)
    assert counts["google"] == {"held": 4, "deferred": 2, "in flight": 1, "holding for A/B": 2}
    assert counts["yahoo"] == {"warming": 4, "queued": 5, "deferred": 1}
    assert counts["microsoft"] == {"queued": 6}
    # Every open row is counted once, under one reason.
    assert (
        sum(sum(c.values()) for c in counts.values())
        == Delivery.objects.filter(state__in=Delivery.OPEN_STATES).count()
    )
    rows = {row.provider: (row, age) for row, age in page.context["rows"]}
    google, google_age = rows["google"]
    assert google.deferred_due == 1
    assert dt.timedelta(hours=1) <= google_age < dt.timedelta(hours=2)
    text = page.content.decode()
    yahoo = re.search(r'<tr data-provider="yahoo">.*?</tr>', text, re.S).group(0)
    assert '<td data-reason="warming">4</td>' in yahoo
    assert '<td data-reason="queued">5</td>' in yahoo
    google_row = re.search(r'<tr data-provider="google" data-held="true">.*?</tr>', text, re.S)
    assert '<td data-reason="held">4</td>' in google_row.group(0)


def test_an_empty_queue_still_offers_holds(operator_client):
    page = operator_client.get(QUEUE)

    text = page.content.decode()
    assert "The queue is empty" in text
    assert text.count('value="Hold"') == ProviderLimit.objects.count()


def test_the_page_reads_a_constant_number_of_queries(operator_client):
    """Limits in one query, open rows in one grouped query, the refusals in one Redis
    round trip, however many providers hold, warm up or wait."""
    today = timezone.localdate()
    campaign = _campaign()
    _deliveries(campaign, 2, provider="google", state="queued")
    operator_client.get(QUEUE)  # warm the session and caches
    with CaptureQueriesContext(connection) as one_provider:
        operator_client.get(QUEUE)
    for provider in ("yahoo", "microsoft"):
        other = _campaign()
        _deliveries(other, 2, provider=provider, state="queued")
        _deliveries(other, 1, provider=provider, state="deferred", next_attempt_at=timezone.now())
        warming_wait_record(provider=provider, campaign_id=other.pk, day=today)
    operator_client.post(HOLD, {"provider": "microsoft", "reason": "block"})

    with CaptureQueriesContext(connection) as three_providers:
        page = operator_client.get(QUEUE)

    assert len(three_providers) == len(one_provider)
    assert _counts(page)["yahoo"] == {"warming": 2, "deferred": 1}
    assert _counts(page)["microsoft"] == {"held": 3}


# --- the refusals in Redis -------------------------------------------------------------


def test_warming_waits_are_today_s_sets_and_expire(settings):
    today = timezone.localdate()
    warming_wait_record(provider="google", campaign_id=7, day=today)
    warming_wait_record(provider="google", campaign_id=7, day=today)
    warming_wait_record(provider="google", campaign_id=9, day=today)
    warming_wait_record(provider="yahoo", campaign_id=8, day=today - dt.timedelta(days=1))

    assert warming_waits() == {"google": {7, 9}}
    assert warming_waits(day=today - dt.timedelta(days=1)) == {"yahoo": {8}}
    client, _scripts = throttle._connection()
    key = f"shaping:warming:{today.isoformat()}:google"
    assert client.smembers(key) == {b"7", b"9"}
    assert 2 * 24 * 3600 - 60 < client.ttl(key) <= 2 * 24 * 3600


def test_warming_waits_are_empty_when_redis_does_not_answer(settings, free_port):
    warming_wait_record(provider="google", campaign_id=7, day=timezone.localdate())
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"

    assert warming_waits() == {}
