"""Storing hits: events in this month's partition, the counters in the same transaction,
unique opens and clicks exact (also with writers racing on the same deliveries), hits of
unknown, unsent or untracked deliveries dropped, and a hit stored twice counted once."""

import datetime as dt
import itertools
import random
import threading
import uuid

import pytest
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact
from sending.models import Delivery
from tests.factories import ContactFactory, WorkspaceFactory
from tracking.ingest import Hit, hits_store, url_hash
from tracking.models import DeliveryActivity, Event, HourlyActivity, LinkActivity, LinkClick

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"
_serial = itertools.count()


def campaign_make(workspace, **fields) -> Campaign:
    return Campaign.objects.create(
        workspace=workspace,
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        from_email="news@news.shop.test",
        status=Campaign.Status.SENDING,
        **fields,
    )


def delivery_make(campaign, *, state="sent", contact=None, sent_ago=dt.timedelta(hours=1)):
    contact = contact or ContactFactory(workspace=campaign.workspace)
    return Delivery.objects.create(
        workspace_id=campaign.workspace_id,
        campaign=campaign,
        contact=contact,
        address=f"r{next(_serial)}@gmail.test",
        state=state,
        provider="google",
        sent_at=timezone.now() - sent_ago if state == "sent" else None,
        lease_token=uuid.uuid4() if state in ("claimed", "in_flight") else None,
    )


def hit(delivery, kind="open", *, url="", at=None, method="GET", agent=BROWSER, key=None):
    return Hit(
        kind=kind,
        delivery_id=delivery.pk if hasattr(delivery, "pk") else delivery,
        url=url,
        occurred_at=at or timezone.now(),
        ip="198.51.100.23",
        user_agent=agent,
        method=method,
        event_key=key or uuid.uuid4(),
    )


def hour_of(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def campaign(workspace):
    return campaign_make(workspace)


@pytest.fixture
def delivery(campaign):
    return delivery_make(campaign)


pytestmark = pytest.mark.django_db


def test_an_open_is_stored_with_its_counters(delivery, campaign):
    at = timezone.now()
    assert hits_store([hit(delivery, at=at)]) == 1

    event = Event.objects.get(delivery_id=delivery.pk)
    assert (event.kind, event.machine_rule, event.campaign_id) == ("open", "", campaign.pk)
    assert (event.workspace_id, event.contact_id, event.ip) == (
        campaign.workspace_id,
        delivery.contact_id,
        "198.51.100.23",
    )
    activity = DeliveryActivity.objects.get(delivery=delivery)
    assert (activity.opens, activity.human_opens, activity.clicks) == (1, 1, 0)
    assert activity.first_open_at == activity.first_human_open_at == at
    assert (activity.provider, activity.campaign_id) == ("google", campaign.pk)
    hourly = HourlyActivity.objects.get(campaign=campaign)
    assert hourly.hour == hour_of(at)
    assert (hourly.opens, hourly.human_opens, hourly.unique_opens, hourly.unique_human_opens) == (
        1,
        1,
        1,
        1,
    )
    assert Contact.objects.get(pk=delivery.contact_id).last_opened_at == at


def test_events_land_in_this_months_partition(delivery):
    hits_store([hit(delivery)])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM tracking_event WHERE delivery_id = %s",
            [delivery.pk],
        )
        assert cursor.fetchone()[0] == f"tracking_event_{timezone.now():%Y%m}"


def test_a_hit_stored_twice_is_counted_once(delivery, campaign):
    again = hit(delivery)
    assert hits_store([again, again]) == 1
    assert hits_store([again]) == 0
    assert Event.objects.filter(delivery_id=delivery.pk).count() == 1
    assert DeliveryActivity.objects.get(delivery=delivery).opens == 1
    assert HourlyActivity.objects.get(campaign=campaign).opens == 1


def test_more_opens_of_a_delivery_count_once_as_unique(delivery, campaign):
    first = timezone.now()
    hits_store([hit(delivery, at=first), hit(delivery, at=first + dt.timedelta(seconds=1))])
    hits_store([hit(delivery, at=first + dt.timedelta(seconds=5))])
    activity = DeliveryActivity.objects.get(delivery=delivery)
    assert (activity.opens, activity.first_open_at) == (3, first)
    assert activity.last_event_at == first + dt.timedelta(seconds=5)
    totals = HourlyActivity.objects.filter(campaign=campaign).aggregate(
        opens=Sum("opens"), unique=Sum("unique_opens")
    )
    assert totals == {"opens": 3, "unique": 1}


def test_a_machine_open_then_a_persons_open(delivery, campaign):
    hits_store([hit(delivery, method="HEAD")])
    hourly = HourlyActivity.objects.get(campaign=campaign)
    assert (hourly.unique_opens, hourly.unique_human_opens, hourly.human_opens) == (1, 0, 0)
    assert Event.objects.get(delivery_id=delivery.pk).machine_rule == "head_request"
    assert Contact.objects.get(pk=delivery.contact_id).last_opened_at is None

    hits_store([hit(delivery)])
    hourly.refresh_from_db()
    assert (hourly.opens, hourly.unique_opens, hourly.unique_human_opens) == (2, 1, 1)
    activity = DeliveryActivity.objects.get(delivery=delivery)
    assert (activity.opens, activity.human_opens) == (2, 1)
    assert activity.first_human_open_at > activity.first_open_at


def test_an_open_as_the_message_arrives_is_a_machines(campaign):
    fresh = delivery_make(campaign, sent_ago=dt.timedelta(seconds=0.5))
    hits_store([hit(fresh)])
    assert Event.objects.get(delivery_id=fresh.pk).machine_rule == "open_at_delivery"
    assert DeliveryActivity.objects.get(delivery=fresh).human_opens == 0


def test_clicks_count_per_link_and_uniquely_per_delivery(campaign):
    ada, bob = delivery_make(campaign), delivery_make(campaign)
    sale, news = "https://shop.example/sale", "https://shop.example/news"
    start = timezone.now()
    hits_store(
        [
            hit(ada, "click", url=sale, at=start),
            hit(ada, "click", url=sale, at=start + dt.timedelta(seconds=30)),
            hit(bob, "click", url=sale, at=start + dt.timedelta(seconds=31)),
        ]
    )
    hits_store([hit(ada, "click", url=news, at=start + dt.timedelta(seconds=90))])

    links = {link.url: link for link in LinkActivity.objects.filter(campaign=campaign)}
    assert (links[sale].clicks, links[sale].unique_clicks, links[sale].unique_human_clicks) == (
        3,
        2,
        2,
    )
    assert links[sale].url_hash == url_hash(sale)
    assert (links[news].clicks, links[news].unique_clicks) == (1, 1)
    assert LinkClick.objects.filter(delivery=ada).count() == 2
    totals = HourlyActivity.objects.filter(campaign=campaign).aggregate(
        clicks=Sum("clicks"), unique=Sum("unique_clicks"), human=Sum("unique_human_clicks")
    )
    assert totals == {"clicks": 4, "unique": 2, "human": 2}
    assert Contact.objects.get(pk=ada.contact_id).last_clicked_at == start + dt.timedelta(
        seconds=90
    )


def test_a_scanners_click_then_a_persons_click_on_the_same_link(delivery, campaign):
    sale = "https://shop.example/sale"
    hits_store([hit(delivery, "click", url=sale, agent="Mimecast-URL-Protect/1.0")])
    link = LinkActivity.objects.get(campaign=campaign)
    assert (link.clicks, link.human_clicks, link.unique_clicks, link.unique_human_clicks) == (
        1,
        0,
        1,
        0,
    )
    assert LinkClick.objects.get(delivery=delivery).first_human_click_at is None

    hits_store([hit(delivery, "click", url=sale)])
    hits_store([hit(delivery, "click", url=sale)])
    link.refresh_from_db()
    assert (link.clicks, link.human_clicks, link.unique_clicks, link.unique_human_clicks) == (
        3,
        2,
        1,
        1,
    )
    assert LinkClick.objects.get(delivery=delivery).first_human_click_at is not None
    activity = DeliveryActivity.objects.get(delivery=delivery)
    assert (activity.clicks, activity.human_clicks) == (3, 2)


def test_every_link_clicked_at_once_is_a_scanner(delivery):
    start = timezone.now()
    hits_store(
        [
            hit(
                delivery,
                "click",
                url=f"https://shop.example/{n}",
                at=start + n * dt.timedelta(milliseconds=300),
            )
            for n in range(4)
        ]
    )
    rules = list(
        Event.objects.filter(delivery_id=delivery.pk)
        .order_by("occurred_at")
        .values_list("machine_rule", flat=True)
    )
    assert rules == ["", "", "all_links_at_once", "all_links_at_once"]


def test_recent_clicks_stored_before_count_too(delivery):
    start = timezone.now()
    hits_store([hit(delivery, "click", url="https://shop.example/a", at=start)])
    hits_store(
        [hit(delivery, "click", url="https://shop.example/b", at=start + dt.timedelta(seconds=0.5))]
    )
    hits_store(
        [hit(delivery, "click", url="https://shop.example/c", at=start + dt.timedelta(seconds=1))]
    )
    last = Event.objects.filter(delivery_id=delivery.pk).order_by("-occurred_at").first()
    assert last.machine_rule == "all_links_at_once"


@pytest.mark.parametrize("state", ["queued", "claimed", "holding", "skipped", "failed"])
def test_hits_of_deliveries_never_handed_over_are_dropped(campaign, state):
    unsent = delivery_make(campaign, state=state)
    assert hits_store([hit(unsent), hit(unsent, "click", url="https://shop.example/")]) == 0
    assert not Event.objects.filter(delivery_id=unsent.pk).exists()
    assert not DeliveryActivity.objects.exists()


@pytest.mark.parametrize("state", ["in_flight", "deferred", "bounced", "unknown"])
def test_hits_of_deliveries_handed_over_are_kept(campaign, state):
    handed = delivery_make(campaign, state=state)
    assert hits_store([hit(handed)]) == 1


def test_hits_of_unknown_deliveries_are_dropped(delivery):
    missing = Delivery.objects.order_by("-pk").first().pk + 1000
    assert hits_store([hit(missing), hit(delivery)]) == 1
    assert not Event.objects.filter(delivery_id=missing).exists()


def test_untracked_campaigns_record_nothing(workspace):
    quiet = campaign_make(workspace, track_opens=False, track_clicks=False)
    opens_only = campaign_make(workspace, track_clicks=False)
    silent, counted = delivery_make(quiet), delivery_make(opens_only)
    link = "https://shop.example/"
    stored = hits_store(
        [hit(silent), hit(silent, "click", url=link), hit(counted), hit(counted, "click", url=link)]
    )
    assert stored == 1
    assert list(
        Event.objects.filter(campaign_id__in=[quiet.pk, opens_only.pk]).values_list(
            "delivery_id", "kind"
        )
    ) == [(counted.pk, "open")]
    assert not LinkActivity.objects.exists()


def test_the_last_open_of_a_contact_never_moves_back(delivery):
    now = timezone.now()
    hits_store([hit(delivery, at=now)])
    hits_store([hit(delivery, at=now - dt.timedelta(minutes=5))])
    assert Contact.objects.get(pk=delivery.contact_id).last_opened_at == now


def test_counters_belong_to_the_deliverys_workspace(delivery):
    other = WorkspaceFactory()
    hits_store([hit(delivery)])
    assert DeliveryActivity.objects.get().workspace_id == delivery.workspace_id
    assert not HourlyActivity.objects.filter(workspace=other).exists()


def test_unique_opens_are_counted_in_the_hour_of_the_first_open(delivery, campaign):
    first = timezone.now().replace(minute=59, second=59) - dt.timedelta(hours=2)
    hits_store([hit(delivery, at=first), hit(delivery, at=first + dt.timedelta(seconds=2))])
    rows = {
        h.hour: (h.opens, h.unique_opens) for h in HourlyActivity.objects.filter(campaign=campaign)
    }
    assert rows == {hour_of(first): (1, 1), hour_of(first) + dt.timedelta(hours=1): (1, 0)}


# --- concurrent writers ------------------------------------------------------------------


def _raw_count(sql: str, campaign_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign_id])
        return cursor.fetchone()[0]


@pytest.fixture
def events_cleared():
    """tracking_event is not a managed table: transactional tests' flush leaves it."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tracking_event")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("events_cleared")
def test_concurrent_writers_count_each_delivery_once():
    workspace = WorkspaceFactory()
    campaign = campaign_make(workspace)
    deliveries = [delivery_make(campaign) for _ in range(12)]
    urls = ["https://shop.example/a", "https://shop.example/b"]
    writers, rounds = 4, 15
    barrier = threading.Barrier(writers)
    failures = []

    def write(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            for _ in range(rounds):
                batch = [
                    hit(
                        delivery,
                        chooser.choice(["open", "click"]),
                        url=chooser.choice(urls),
                        method=chooser.choice(["GET", "GET", "HEAD"]),
                    )
                    for delivery in chooser.sample(deliveries, 8)
                ]
                barrier.wait(timeout=30)
                hits_store(batch)
        except Exception as error:  # a deadlock or a broken count fails the test below
            failures.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []

    events = "SELECT count(*) FROM tracking_event WHERE campaign_id = %s"
    assert _raw_count(events, campaign.pk) == writers * rounds * 8
    hourly = HourlyActivity.objects.filter(campaign=campaign).aggregate(
        *(
            Sum(name)
            for name in (
                "opens",
                "unique_opens",
                "unique_human_opens",
                "unique_clicks",
                "unique_human_clicks",
            )
        )
    )
    distinct = "SELECT count(DISTINCT delivery_id) FROM tracking_event WHERE campaign_id = %s AND "
    assert hourly["opens__sum"] == _raw_count(events + " AND kind = 'open'", campaign.pk)
    assert hourly["unique_opens__sum"] == _raw_count(distinct + "kind = 'open'", campaign.pk)
    assert hourly["unique_human_opens__sum"] == _raw_count(
        distinct + "kind = 'open' AND machine_rule = ''", campaign.pk
    )
    assert hourly["unique_clicks__sum"] == _raw_count(distinct + "kind = 'click'", campaign.pk)
    assert hourly["unique_human_clicks__sum"] == _raw_count(
        distinct + "kind = 'click' AND machine_rule = ''", campaign.pk
    )
    links = LinkActivity.objects.filter(campaign=campaign).aggregate(
        Sum("clicks"), Sum("unique_clicks"), Sum("unique_human_clicks")
    )
    pairs = "SELECT count(DISTINCT (delivery_id, url)) FROM tracking_event WHERE campaign_id = %s"
    assert links["unique_clicks__sum"] == _raw_count(pairs + " AND kind = 'click'", campaign.pk)
    assert links["unique_human_clicks__sum"] == _raw_count(
        pairs + " AND kind = 'click' AND machine_rule = ''", campaign.pk
    )
    assert LinkClick.objects.filter(campaign=campaign).count() == links["unique_clicks__sum"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT delivery_id, count(*) FILTER (WHERE kind = 'open'), "
            "count(*) FILTER (WHERE kind = 'click' AND machine_rule = '') "
            "FROM tracking_event WHERE campaign_id = %s GROUP BY delivery_id",
            [campaign.pk],
        )
        raw = {row[0]: row[1:] for row in cursor.fetchall()}
    stored = {
        a.delivery_id: (a.opens, a.human_clicks)
        for a in DeliveryActivity.objects.filter(campaign=campaign)
    }
    assert stored == raw
