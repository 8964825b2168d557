"""Roll-ups: a campaign's figures equal raw counts over its events and deliveries (totals,
per provider, per variant), a workspace's days equal raw counts per UTC day, the counters
rebuilt from events equal those the ingestion path kept, and the periodic refresh
recomputes exactly the campaigns whose facts changed."""

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import ConsentRecord
from sending.models import CampaignSend, Delivery, FeedbackEvent
from tests.tracking.report_seed import BROWSER, report_campaign_seed
from tracking.ingest import Hit, hits_store
from tracking.models import (
    CampaignRollup,
    DeliveryActivity,
    HourlyActivity,
    LinkActivity,
    LinkClick,
    WorkspaceDay,
)
from tracking.rollups import (
    REFRESH_LOCK,
    activity_counters_rebuild,
    campaign_rollup_compute,
    rollups_refresh,
    workspace_days_compute,
)

pytestmark = pytest.mark.django_db


def _rows(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


_EVENT_FIGURES = """
count(*) FILTER (WHERE e.kind = 'open'),
count(*) FILTER (WHERE e.kind = 'open' AND e.machine_rule = ''),
count(*) FILTER (WHERE e.kind = 'click'),
count(*) FILTER (WHERE e.kind = 'click' AND e.machine_rule = ''),
count(DISTINCT e.delivery_id) FILTER (WHERE e.kind = 'open'),
count(DISTINCT e.delivery_id) FILTER (WHERE e.kind = 'open' AND e.machine_rule = ''),
count(DISTINCT e.delivery_id) FILTER (WHERE e.kind = 'click'),
count(DISTINCT e.delivery_id) FILTER (WHERE e.kind = 'click' AND e.machine_rule = '')
"""
_ACTIVITY_KEYS = (
    "opens",
    "human_opens",
    "clicks",
    "human_clicks",
    "unique_opens",
    "unique_human_opens",
    "unique_clicks",
    "unique_human_clicks",
)
_DELIVERY_FIGURES = """
count(*),
count(*) FILTER (WHERE state IN ('in_flight', 'sent', 'deferred', 'bounced', 'unknown')),
count(*) FILTER (WHERE state = 'sent'),
count(*) FILTER (WHERE (state = 'bounced' OR bounced_at IS NOT NULL) AND bounce_class = 'hard'),
count(*) FILTER (WHERE (state = 'bounced' OR bounced_at IS NOT NULL) AND bounce_class = 'soft'),
count(*) FILTER (WHERE (state = 'bounced' OR bounced_at IS NOT NULL) AND bounce_class = 'block'),
count(*) FILTER (WHERE (state = 'bounced' OR bounced_at IS NOT NULL)
                 AND bounce_class IN ('unknown', '')),
count(*) FILTER (WHERE complained_at IS NOT NULL)
"""
_DELIVERY_KEYS = (
    "deliveries",
    "handed_over",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "bounced_block",
    "bounced_unknown",
    "complained",
)


@pytest.fixture
def seeded(workspace):
    return report_campaign_seed(workspace)


def test_campaign_figures_equal_raw_counts_of_events_and_deliveries(seeded):
    campaign = seeded.campaign
    rollup = campaign_rollup_compute(campaign_id=campaign.pk)

    (events,) = _rows(
        f"SELECT {_EVENT_FIGURES} FROM tracking_event e WHERE e.campaign_id = %s",
        [campaign.pk],
    )
    assert {key: rollup.counts[key] for key in _ACTIVITY_KEYS} == dict(
        zip(_ACTIVITY_KEYS, events, strict=True)
    )
    (deliveries,) = _rows(
        f"SELECT {_DELIVERY_FIGURES} FROM sending_delivery WHERE campaign_id = %s",
        [campaign.pk],
    )
    assert {key: rollup.counts[key] for key in _DELIVERY_KEYS} == dict(
        zip(_DELIVERY_KEYS, deliveries, strict=True)
    )
    (unsubscribed,) = _rows(
        "SELECT count(DISTINCT r.contact_id) FROM contacts_consentrecord r "
        "WHERE r.campaign_id = %s AND r.action = 'withdrawn' AND r.contact_id NOT IN "
        "(SELECT contact_id FROM sending_delivery WHERE campaign_id = %s "
        "AND complained_at IS NOT NULL)",
        [campaign.pk, campaign.pk],
    )[0]
    assert rollup.counts["unsubscribed"] == unsubscribed
    # The seed, as a person reads it: machines' opens and clicks are in the totals only.
    expected = {
        "deliveries": 26,
        "handed_over": 23,
        "delivered": 16,
        "bounced": 5,
        "bounced_hard": 1,
        "bounced_soft": 1,
        "bounced_block": 1,
        "bounced_unknown": 2,
        "deferred": 1,
        "failed": 1,
        "skipped": 1,
        "pending": 1,
        "outcome_unknown": 1,
        "complained": 2,
        "unsubscribed": 2,
        "opens": 15,
        "human_opens": 11,
        "unique_opens": 12,
        "unique_human_opens": 10,
        "clicks": 8,
        "human_clicks": 6,
        "unique_clicks": 6,
        "unique_human_clicks": 4,
    }
    assert {key: rollup.counts[key] for key in expected} == expected
    assert seeded.stored == 23
    assert rollup.counts["first_sent_at"] == seeded.sent_at.isoformat()


def test_figures_per_provider_and_variant_equal_raw_counts(seeded):
    campaign = seeded.campaign
    rollup = campaign_rollup_compute(campaign_id=campaign.pk)

    for column, stored in (("provider", rollup.by_provider), ("variant_id", rollup.by_variant)):
        events = {
            group: dict(zip(_ACTIVITY_KEYS, figures, strict=True))
            for group, *figures in _rows(
                f"SELECT d.{column}, {_EVENT_FIGURES} FROM tracking_event e "
                f"JOIN sending_delivery d ON d.id = e.delivery_id "
                f"WHERE e.campaign_id = %s GROUP BY d.{column}",
                [campaign.pk],
            )
        }
        deliveries = {
            group: dict(zip(_DELIVERY_KEYS, figures, strict=True))
            for group, *figures in _rows(
                f"SELECT {column}, {_DELIVERY_FIGURES} FROM sending_delivery "
                f"WHERE campaign_id = %s GROUP BY {column}",
                [campaign.pk],
            )
        }
        assert set(stored) == {"" if group is None else str(group) for group in deliveries}
        for group, figures in deliveries.items():
            row = stored["" if group is None else str(group)]
            assert {key: row[key] for key in _DELIVERY_KEYS} == figures, (column, group)
            expected = events.get(group, dict.fromkeys(_ACTIVITY_KEYS, 0))
            assert {key: row[key] for key in _ACTIVITY_KEYS} == expected, (column, group)

    variant_a = rollup.by_variant[str(seeded.variants["A"].pk)]
    assert (variant_a["label"], variant_a["subject"]) == ("A", "Subject A")
    assert set(rollup.by_provider) == {"google", "microsoft", "yahoo", "apple", ""}


def test_a_campaign_without_a_test_or_deliveries_has_zero_figures(workspace):
    campaign = Campaign.objects.create(workspace=workspace, name="Quiet", status="sent")
    rollup = campaign_rollup_compute(campaign_id=campaign.pk)
    assert rollup.counts["deliveries"] == rollup.counts["opens"] == 0
    assert rollup.by_variant == {}
    assert rollup.by_provider == {}


def test_an_older_computation_never_replaces_a_newer_one(seeded):
    now = timezone.now()
    campaign_rollup_compute(campaign_id=seeded.campaign.pk, now=now)
    campaign_rollup_compute(campaign_id=seeded.campaign.pk, now=now - dt.timedelta(minutes=1))
    assert CampaignRollup.objects.get(campaign=seeded.campaign).computed_at == now


def _counters(campaign) -> dict[str, list[tuple]]:
    fields = {
        DeliveryActivity: ["delivery_id", "variant_id", "provider", *_ACTIVITY_KEYS[:4],
                           "first_open_at", "first_human_open_at", "first_click_at",
                           "first_human_click_at", "last_event_at"],
        HourlyActivity: ["hour", *_ACTIVITY_KEYS],
        LinkActivity: ["url_hash", "url", "clicks", "human_clicks", "unique_clicks",
                       "unique_human_clicks"],
        LinkClick: ["delivery_id", "url_hash", "first_click_at", "first_human_click_at"],
    }  # fmt: skip
    return {
        model.__name__: sorted(
            model.objects.filter(campaign=campaign).values_list(*names), key=repr
        )
        for model, names in fields.items()
    }


def test_counters_rebuilt_from_events_equal_those_the_ingestion_kept(seeded):
    kept = _counters(seeded.campaign)
    assert all(kept.values())

    activity_counters_rebuild(campaign_id=seeded.campaign.pk)

    assert _counters(seeded.campaign) == kept


def test_workspace_days_equal_raw_counts_per_utc_day(seeded, workspace):
    now = seeded.sent_at + dt.timedelta(hours=30)
    rows = workspace_days_compute(workspace_id=workspace.pk, days=3, now=now)

    days = {row.day: row.counts for row in WorkspaceDay.objects.filter(workspace=workspace)}
    assert len(rows) == len(days) == 3
    assert max(days) == now.astimezone(dt.UTC).date()
    for day, counts in days.items():
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        end = start + dt.timedelta(days=1)
        ((sent, delivered, bounced, complained),) = _rows(
            "SELECT count(*) FILTER (WHERE sent_at >= %(s)s AND sent_at < %(e)s "
            "    OR (state = 'bounced' AND bounced_at IS NULL AND sent_at IS NULL "
            "        AND updated_at >= %(s)s AND updated_at < %(e)s)), "
            "count(*) FILTER (WHERE sent_at >= %(s)s AND sent_at < %(e)s AND state = 'sent'), "
            "count(*) FILTER (WHERE bounced_at >= %(s)s AND bounced_at < %(e)s "
            "    OR (state = 'bounced' AND bounced_at IS NULL "
            "        AND updated_at >= %(s)s AND updated_at < %(e)s)), "
            "count(*) FILTER (WHERE complained_at >= %(s)s AND complained_at < %(e)s) "
            "FROM sending_delivery WHERE workspace_id = %(w)s",
            {"s": start, "e": end, "w": workspace.pk},
        )
        ((unique_opens, unique_clicks, opens),) = _rows(
            "SELECT count(*) FILTER (WHERE first_open_at >= %(s)s AND first_open_at < %(e)s), "
            "count(*) FILTER (WHERE first_click_at >= %(s)s AND first_click_at < %(e)s), "
            "(SELECT count(*) FROM tracking_event WHERE workspace_id = %(w)s AND kind = 'open' "
            " AND occurred_at >= %(s)s AND occurred_at < %(e)s) "
            "FROM tracking_deliveryactivity WHERE workspace_id = %(w)s",
            {"s": start, "e": end, "w": workspace.pk},
        )
        assert (
            counts["sent"],
            counts["delivered"],
            counts["bounced"],
            counts["complained"],
        ) == (sent, delivered, bounced, complained), day
        assert (counts["unique_opens"], counts["unique_clicks"], counts["opens"]) == (
            unique_opens,
            unique_clicks,
            opens,
        ), day
    assert sum(counts["sent"] for counts in days.values()) == 22
    assert sum(counts["delivered"] for counts in days.values()) == 16
    assert sum(counts["unique_opens"] for counts in days.values()) == 12


# --- the periodic refresh -----------------------------------------------------------------


def _computed_at(campaign):
    return CampaignRollup.objects.get(campaign=campaign).computed_at


def test_refresh_computes_new_campaigns_then_only_those_that_changed(seeded, workspace):
    other = report_campaign_seed(workspace, name="Summer sale")
    now = timezone.now() + dt.timedelta(minutes=3)  # the seeded facts are past the lag
    assert rollups_refresh(now=now)["campaigns"] == 2
    assert WorkspaceDay.objects.filter(workspace=workspace).count() == 2
    first = _computed_at(seeded.campaign)

    later = now + dt.timedelta(minutes=5)
    assert rollups_refresh(now=later)["campaigns"] == 0

    # A person opens the first campaign: only it is computed again.
    person = Hit(
        kind="open",
        delivery_id=seeded.deliveries[1].pk,
        url="",
        occurred_at=later,
        ip="198.51.100.23",
        user_agent=BROWSER,
        method="GET",
        event_key=uuid.uuid4(),
    )
    assert hits_store([person]) == 1
    before = CampaignRollup.objects.get(campaign=seeded.campaign).counts["human_opens"]
    assert rollups_refresh(now=later + dt.timedelta(minutes=1))["campaigns"] == 1
    assert _computed_at(seeded.campaign) > first
    rollup = CampaignRollup.objects.get(campaign=seeded.campaign)
    assert rollup.counts["human_opens"] == before + 1
    assert _computed_at(other.campaign) < _computed_at(seeded.campaign)


def test_refresh_follows_unsubscribes_and_bounce_reports(seeded):
    now = timezone.now() + dt.timedelta(minutes=3)
    rollups_refresh(now=now)
    later = now + dt.timedelta(minutes=5)

    ConsentRecord.objects.create(
        workspace_id=seeded.campaign.workspace_id,
        contact=seeded.deliveries[9].contact,
        action="withdrawn",
        method="form",
        campaign_id=seeded.campaign.pk,
        created_at=later,
    )
    assert rollups_refresh(now=later + dt.timedelta(seconds=30))["campaigns"] == 1
    assert CampaignRollup.objects.get(campaign=seeded.campaign).counts["unsubscribed"] == 3

    even_later = later + dt.timedelta(minutes=5)
    bounced = seeded.deliveries[10]
    FeedbackEvent.objects.create(
        workspace_id=bounced.workspace_id,
        delivery=bounced,
        kind="bounce",
        bounce_class="hard",
        source="inbound",
        occurred_at=even_later - dt.timedelta(hours=1),  # the report's own time
        created_at=even_later,
    )
    Delivery.objects.filter(pk=bounced.pk).update(
        state="bounced", bounce_class="hard", bounced_at=even_later - dt.timedelta(hours=1)
    )
    assert rollups_refresh(now=even_later + dt.timedelta(seconds=30))["campaigns"] == 1
    assert CampaignRollup.objects.get(campaign=seeded.campaign).counts["bounced_hard"] == 2


def test_refresh_keeps_sending_campaigns_fresh_and_leaves_old_ones(seeded, workspace):
    now = timezone.now()
    rollups_refresh(now=now)
    Campaign.objects.filter(pk=seeded.campaign.pk).update(status="sending")
    old = report_campaign_seed(workspace, name="Last year")
    CampaignSend.objects.filter(campaign=old.campaign).update(
        started_at=now - dt.timedelta(days=40), finished_at=now - dt.timedelta(days=40)
    )
    draft = Campaign.objects.create(workspace=workspace, name="Draft")

    result = rollups_refresh(now=now + dt.timedelta(minutes=1))

    assert result["campaigns"] == 1
    assert _computed_at(seeded.campaign) > now
    assert not CampaignRollup.objects.filter(campaign__in=[old.campaign, draft]).exists()


def test_refresh_recomputes_a_quiet_campaign_after_the_maximum_age(seeded):
    now = timezone.now() + dt.timedelta(minutes=3)
    rollups_refresh(now=now)
    assert rollups_refresh(now=now + dt.timedelta(minutes=10))["campaigns"] == 0
    assert rollups_refresh(now=now + dt.timedelta(minutes=16))["campaigns"] == 1


def test_a_refresh_already_running_makes_the_next_one_skip(seeded):
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtext(%s), 0)", [REFRESH_LOCK])
        assert rollups_refresh(now=timezone.now())["skipped"] == 1
        assert not CampaignRollup.objects.exists()
        with other.cursor() as cursor:
            # Released now: a closed session's locks go only once its backend has ended.
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s), 0)", [REFRESH_LOCK])
    finally:
        other.close()
    assert rollups_refresh(now=timezone.now())["campaigns"] == 1


def test_refresh_is_the_beat_tasks_body(seeded):
    from espsite.celery import app
    from tracking.tasks import rollups_refresh_task

    assert app.conf.beat_schedule["tracking-rollups"]["task"] == rollups_refresh_task.name
    assert app.conf.beat_schedule["tracking-rollups"]["schedule"] == 60.0
    assert rollups_refresh_task.delay().get()["campaigns"] == 1
    assert CampaignRollup.objects.filter(campaign=seeded.campaign).exists()
