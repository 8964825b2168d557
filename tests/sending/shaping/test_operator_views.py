"""The operators' admin pages: sending IPs today and the mail queue (with "retry now")."""

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
from sending.models import (
    Delivery,
    DnsblListing,
    DnsblZone,
    IpPool,
    SendingIp,
    WarmupSchedule,
)
from tests.factories import UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

IPS_TODAY = "/admin/sending/ips-today/"
QUEUE = "/admin/sending/mail-queue/"
RETRY_NOW = "/admin/sending/mail-queue/retry-now/"

_serial = itertools.count()


@pytest.fixture(autouse=True)
def _thresholds(settings):
    settings.WARMUP_HOLD_DEFERRAL_PERCENT = 30.0
    settings.WARMUP_HOLD_BOUNCE_PERCENT = 5.0
    settings.WARMUP_HOLD_COMPLAINT_PERCENT = 0.1


@pytest.fixture
def campaign():
    return Campaign.objects.create(
        workspace=WorkspaceFactory(),
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        from_email="news@shop.test",
        status=Campaign.Status.SENDING,
    )


def _deliveries(campaign, n, *, provider, state, source_ip=None, **fields) -> None:
    for _ in range(n):
        Delivery.objects.create(
            workspace_id=campaign.workspace_id,
            campaign=campaign,
            address=f"r{next(_serial)}@{provider or 'other'}.test",
            state=state,
            provider=provider,
            source_ip=source_ip,
            lease_token=uuid.uuid4() if state in ("claimed", "in_flight") else None,
            **fields,
        )


def _rows(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- Sending IPs: today ----------------------------------------------------------------


def test_sending_ips_today_shows_state_caps_volume_rates_and_listings(operator_client, campaign):
    now = timezone.now()
    yesterday = now - dt.timedelta(days=1)
    today = timezone.localdate()
    warm = IpPool.objects.create(
        name="Warm", warmup_schedule=WarmupSchedule.objects.create(name="S", daily_caps=[50, 100])
    )
    main = IpPool.objects.create(name="Main")
    warming = SendingIp.objects.create(
        address="127.0.0.2",
        pool=warm,
        helo_hostname="mta2.test",
        state=SendingIp.State.WARMING,
        warmup_started_on=today - dt.timedelta(days=1),
    )
    active = SendingIp.objects.create(
        address="127.0.0.3", pool=main, helo_hostname="mta3.test", state=SendingIp.State.ACTIVE
    )
    SendingIp.objects.create(
        address="127.0.0.4", pool=main, helo_hostname="mta4.test", state=SendingIp.State.PAUSED
    )
    # Yesterday the warming IP sent 8 to google and 2 were deferred (20%: healthy, day 2).
    _deliveries(campaign, 8, provider="google", state="sent", source_ip="127.0.0.2",
                sent_at=yesterday, updated_at=yesterday)  # fmt: skip
    _deliveries(campaign, 2, provider="google", state="deferred", source_ip="127.0.0.2",
                updated_at=yesterday, next_attempt_at=now)  # fmt: skip
    _deliveries(campaign, 3, provider="google", state="sent", source_ip="127.0.0.2",
                sent_at=now, updated_at=now)  # fmt: skip
    _deliveries(campaign, 1, provider="microsoft", state="sent", source_ip="127.0.0.2",
                sent_at=now, updated_at=now)  # fmt: skip
    # The active IP: 3 sent and 1 bounced yesterday (25% bounces), 5 sent today.
    _deliveries(campaign, 3, provider="yahoo", state="sent", source_ip="127.0.0.3",
                sent_at=yesterday, updated_at=yesterday)  # fmt: skip
    _deliveries(campaign, 1, provider="yahoo", state="bounced", source_ip="127.0.0.3",
                bounced_at=yesterday, updated_at=yesterday)  # fmt: skip
    _deliveries(campaign, 5, provider="yahoo", state="sent", source_ip="127.0.0.3",
                sent_at=now, updated_at=now)  # fmt: skip
    zone = DnsblZone.objects.create(name="Test BL", zone="bl.test", kind="ip", is_enabled=True)
    DnsblListing.objects.create(
        zone=zone, subject="127.0.0.3", sending_ip=active, return_codes=["127.0.0.2"]
    )
    DnsblListing.objects.create(  # delisted: not shown
        zone=zone, subject="127.0.0.3", sending_ip=active, return_codes=["127.0.0.9"],
        delisted_at=now,
    )  # fmt: skip

    page = operator_client.get(IPS_TODAY)

    assert page.status_code == 200
    pools = dict(page.context["pools"])
    assert list(pools) == ["Main", "Warm"]
    rows = {row.sending_ip.address: row for rows in pools.values() for row in rows}
    # Today's volume matches a raw count of what left each IP today.
    start = dt.datetime.combine(today, dt.time.min, tzinfo=timezone.get_default_timezone())
    raw = _rows(
        "SELECT host(source_ip), provider, count(*) FROM sending_delivery "
        "WHERE sent_at >= %s GROUP BY 1, 2",
        [start],
    )
    shown = {
        (address, line.provider, line.sent_today)
        for address, row in rows.items()
        for line in row.providers
        if line.sent_today
    }
    assert shown == set(raw)
    google = {line.provider: line for line in rows["127.0.0.2"].providers}["google"]
    assert (google.day, google.cap, google.sent_today) == (2, 100, 3)
    assert google.deferral_percent == pytest.approx(20.0)
    assert {line.provider: line.cap for line in rows["127.0.0.2"].providers}["microsoft"] == 50
    assert rows["127.0.0.2"].sent_today == 4
    yahoo = {line.provider: line for line in rows["127.0.0.3"].providers}["yahoo"]
    assert (yahoo.day, yahoo.cap, yahoo.sent_today) == (None, None, 5)
    assert yahoo.bounce_percent == pytest.approx(25.0)
    assert [listing.return_codes for listing in rows["127.0.0.3"].listings] == [["127.0.0.2"]]
    assert rows["127.0.0.4"].providers == []
    text = page.content.decode()
    assert re.search(r'data-address="127.0.0.2">.*?data-fact="state">Warming up<', text, re.S)
    assert re.search(r'data-address="127.0.0.4">.*?data-fact="state">Paused<', text, re.S)
    assert "Listed on Test BL (127.0.0.2)" in text
    assert "127.0.0.9" not in text
    assert f'href="/admin/sending/sendingip/{warming.pk}/change/"' in text


def test_sending_ips_today_without_ips_says_so(operator_client):
    SendingIp.objects.all().delete()

    page = operator_client.get(IPS_TODAY)

    assert page.status_code == 200
    assert "No sending IPs" in page.content.decode()


# --- Mail queue ------------------------------------------------------------------------


@pytest.fixture
def queue(campaign):
    now = timezone.now()
    _deliveries(campaign, 3, provider="google", state="queued",
                created_at=now - dt.timedelta(hours=2))  # fmt: skip
    _deliveries(campaign, 1, provider="google", state="deferred",
                next_attempt_at=now - dt.timedelta(minutes=10))  # fmt: skip
    _deliveries(campaign, 2, provider="google", state="deferred",
                next_attempt_at=now + dt.timedelta(hours=1))  # fmt: skip
    _deliveries(campaign, 1, provider="google", state="claimed")
    _deliveries(campaign, 1, provider="google", state="in_flight")
    _deliveries(campaign, 1, provider="microsoft", state="deferred",
                next_attempt_at=now + dt.timedelta(hours=1))  # fmt: skip
    _deliveries(campaign, 2, provider="microsoft", state="holding")
    _deliveries(campaign, 4, provider="google", state="sent", sent_at=now)
    return now


def test_mail_queue_counts_unfinished_deliveries_per_provider_and_reason(operator_client, queue):
    page = operator_client.get(QUEUE)

    assert page.status_code == 200
    raw = _rows(
        "SELECT provider, CASE WHEN state IN ('claimed', 'in_flight') THEN 'in flight' "
        "WHEN state = 'holding' THEN 'holding for A/B' ELSE state END, count(*) "
        "FROM sending_delivery WHERE state IN "
        "('queued', 'deferred', 'holding', 'claimed', 'in_flight') GROUP BY 1, 2"
    )
    shown = {
        (queue_row.provider, reason, count)
        for queue_row, _age in page.context["rows"]
        for reason, count in queue_row.reason_counts()
        if count
    }
    assert shown == set(raw)
    by_provider = {queue_row.provider: (queue_row, age) for queue_row, age in page.context["rows"]}
    google, google_age = by_provider["google"]
    assert google.deferred_due == 1
    assert google_age >= dt.timedelta(hours=2)  # the oldest queued row, not the deferred one
    microsoft, microsoft_age = by_provider["microsoft"]
    assert (microsoft.deferred_due, microsoft_age) == (0, None)  # nothing due there
    text = page.content.decode()
    seconds = re.search(r'data-provider="google">.*?data-seconds="(\d+)"', text, re.S)
    assert 7200 <= int(seconds.group(1)) < 7300
    assert text.count('value="Retry now"') == 2


def test_mail_queue_when_empty_says_so(operator_client):
    page = operator_client.get(QUEUE)

    assert page.status_code == 200
    assert "The queue is empty" in page.content.decode()


def test_retry_now_makes_only_that_providers_deferred_rows_due(operator_client, queue):
    before = dict(Delivery.objects.values_list("pk", "next_attempt_at"))
    expected = set(
        Delivery.objects.filter(
            provider="google", state="deferred", next_attempt_at__gt=queue
        ).values_list("pk", flat=True)
    )

    response = operator_client.post(RETRY_NOW, {"provider": "google"})

    assert response.status_code == 302
    after = dict(Delivery.objects.values_list("pk", "next_attempt_at"))
    assert {pk for pk in before if before[pk] != after[pk]} == expected
    assert len(expected) == 2
    assert all(queue < after[pk] <= timezone.now() for pk in expected)
    entry = AuditEntry.objects.get(verb="deliveries.retry_now")
    assert entry.actor == operator_client.user
    assert entry.details == {"provider": "google", "deliveries": 2}
    page = operator_client.get(QUEUE)
    google = {row.provider: row for row, _age in page.context["rows"]}["google"]
    assert google.deferred_due == 3


def test_retry_now_is_a_post(operator_client, queue):
    assert operator_client.get(RETRY_NOW).status_code == 405


@pytest.mark.parametrize("is_staff", [False, True])
def test_pages_refuse_users_who_are_not_verified_staff(queue, is_staff):
    """Non-staff go to the admin's sign-in, staff without a verified second factor to set
    one up; neither sees a page or changes a row."""
    client = Client()
    client.force_login(UserFactory(is_staff=is_staff, is_superuser=is_staff))
    before = dict(Delivery.objects.values_list("pk", "next_attempt_at"))
    refused_to = "/accounts/security/" if is_staff else "/admin/login/"

    for url in (IPS_TODAY, QUEUE):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(refused_to)
    response = client.post(RETRY_NOW, {"provider": "google"})

    assert response.status_code == 302
    assert response["Location"].startswith(refused_to)
    assert dict(Delivery.objects.values_list("pk", "next_attempt_at")) == before
    assert not AuditEntry.objects.filter(verb="deliveries.retry_now").exists()


def test_the_admin_lists_both_pages_under_sending(operator_client):
    text = operator_client.get("/admin/sending/").content.decode()

    for name, url in [("Outbox", "/admin/sending/outbox/"), ("Sending IPs: today", IPS_TODAY),
                      ("Mail queue", QUEUE)]:  # fmt: skip
        assert f'<a href="{url}">{name}</a>' in text


def test_active_ips_add_no_queries_to_the_ips_page(operator_client, campaign):
    """Volume and rates of every IP come from one grouped query; only warming IPs read
    their days since the start."""
    pool = IpPool.objects.create(name="Main")
    SendingIp.objects.create(address="127.0.0.2", pool=pool, state=SendingIp.State.ACTIVE)
    operator_client.get(IPS_TODAY)  # warm the session and caches
    with CaptureQueriesContext(connection) as one_ip:
        operator_client.get(IPS_TODAY)
    for n in range(3, 8):
        SendingIp.objects.create(address=f"127.0.0.{n}", pool=pool, state=SendingIp.State.ACTIVE)
        _deliveries(campaign, 1, provider="google", state="sent", source_ip=f"127.0.0.{n}",
                    sent_at=timezone.now())  # fmt: skip

    with CaptureQueriesContext(connection) as six_ips:
        page = operator_client.get(IPS_TODAY)

    assert len(six_ips) == len(one_ip)
    assert page.content.decode().count('data-fact="sent">1<') == 5
