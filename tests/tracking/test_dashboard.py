"""The dashboard's deliverability panel: the 30 days' figures from WorkspaceDay rows, the
rates against the mailbox providers' lines, domain authentication, blocklist listings, one
workspace's facts only, and a query count that does not grow with the data."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from sending.models import (
    Delivery,
    DnsblListing,
    DnsblZone,
    IpPool,
    SendingDomain,
    SendingIp,
    WorkspacePool,
)
from tests.factories import WorkspaceFactory
from tracking.dashboard import workspace_health
from tracking.models import WorkspaceDay

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 3, 31)
PASSING = {key: {"state": "pass"} for key in ("dkim", "spf", "dmarc", "return_path")}


def day(workspace, on: dt.date, **counts) -> WorkspaceDay:
    return WorkspaceDay.objects.create(
        workspace=workspace, day=on, counts=counts, computed_at=timezone.now()
    )


def days_ago(n: int, today: dt.date = TODAY) -> dt.date:
    return today - dt.timedelta(days=n)


def pool_with_ip(workspace, address: str, name: str) -> SendingIp:
    pool = IpPool.objects.create(
        name=name, kind=IpPool.Kind.DEDICATED, dedicated_workspace=workspace
    )
    WorkspacePool.objects.create(workspace=workspace, pool=pool)
    return SendingIp.objects.create(address=address, pool=pool, helo_hostname=f"{name}.test")


def listing(ip: SendingIp, zone: DnsblZone, **fields) -> DnsblListing:
    return DnsblListing.objects.create(
        zone=zone, subject=ip.address, sending_ip=ip, return_codes=["127.0.0.2"], **fields
    )


@pytest.fixture
def zone(db) -> DnsblZone:
    return DnsblZone.objects.create(
        name="Test blocklist", zone="bl.test", kind=DnsblZone.Kind.IP, listing_codes=["127.0.0.2"]
    )


def panel_url(workspace) -> str:
    return reverse("tracking:dashboard_panel", kwargs={"workspace_slug": workspace.slug})


# Figures --------------------------------------------------------------------------------


def test_figures_add_up_the_days_of_the_window_only(workspace):
    engaged = {"unique_opens": 500, "unique_clicks": 100}  # machines included: not shown
    day(workspace, days_ago(0), sent=400, delivered=390, bounced=10, complained=0,
        unique_human_opens=120, unique_human_clicks=30, **engaged)  # fmt: skip
    day(workspace, days_ago(1), sent=600, delivered=580, bounced=20, complained=1,
        unique_human_opens=200, unique_human_clicks=50, **engaged)  # fmt: skip
    day(workspace, days_ago(29), sent=1000, delivered=1000, unique_human_opens=80)
    day(workspace, days_ago(30), sent=99_999, bounced=99_999)  # a day before the window
    day(workspace, TODAY + dt.timedelta(days=1), sent=5)  # not yet

    health = workspace_health(workspace=workspace, today=TODAY)

    assert (health.first_day, health.last_day) == (days_ago(29), TODAY)
    assert health.totals["sent"] == 2000
    assert health.totals["delivered"] == 1970
    assert health.bounce_percent == pytest.approx(1.5)  # 30 of 2000
    assert health.complaint_percent == pytest.approx(0.05)
    assert health.open_percent == pytest.approx(400 * 100 / 1970)  # by people only
    assert health.click_percent == pytest.approx(80 * 100 / 1970)
    assert health.bounce_health.level == health.complaint_health.level == "good"
    assert health.computing_days == []


def test_the_sparkline_has_a_bar_a_day_scaled_to_the_busiest(workspace):
    day(workspace, days_ago(29), sent=50)
    day(workspace, days_ago(10), sent=200)
    day(workspace, days_ago(3), sent=1)
    day(workspace, days_ago(1), sent=0)
    day(workspace, days_ago(0), sent=100)

    spark = workspace_health(workspace=workspace, today=TODAY).sparkline

    assert [bar.day for bar in spark.bars] == [days_ago(n) for n in range(29, -1, -1)]
    heights = {bar.day: bar.height for bar in spark.bars}
    assert heights[days_ago(10)] == spark.height  # the busiest day
    assert heights[days_ago(0)] == spark.height // 2
    assert heights[days_ago(29)] == spark.height // 4
    assert heights[days_ago(3)] == 1  # a day with mail stays visible
    assert heights[days_ago(2)] == heights[days_ago(1)] == 0
    assert all(bar.y + bar.height == spark.height for bar in spark.bars)
    assert spark.title == (
        "Messages sent per day from 2 Mar to 31 Mar 2026: 351 in all, most on 21 Mar (200)."
    )


@pytest.mark.parametrize(
    ("complained", "level"),
    [(9, "good"), (10, "warning"), (29, "warning"), (30, "bad")],  # 0.09%, 0.1%, 0.29%, 0.3%
)
def test_complaints_against_the_gmail_and_yahoo_lines(workspace, complained, level):
    day(workspace, days_ago(0), sent=10_000, delivered=10_000, complained=complained)

    health = workspace_health(workspace=workspace, today=TODAY)

    assert health.complaint_health.level == level
    assert health.bounce_health.level == "good"


@pytest.mark.parametrize(
    ("bounced", "level"), [(199, "good"), (200, "warning"), (499, "warning"), (500, "bad")]
)
def test_bounces_against_the_2_and_5_percent_lines(workspace, bounced, level):
    day(workspace, days_ago(3), sent=10_000, delivered=10_000 - bounced, bounced=bounced)

    assert workspace_health(workspace=workspace, today=TODAY).bounce_health.level == level


def test_without_mail_there_is_no_rate_to_judge(workspace):
    health = workspace_health(workspace=workspace, today=TODAY)

    assert health.totals["sent"] == 0
    assert health.bounce_percent is health.complaint_percent is health.open_percent is None
    assert health.complaint_health.level == health.bounce_health.level == "none"
    assert health.sparkline.title == "No messages sent from 2 Mar to 31 Mar 2026."


def test_recent_days_with_mail_but_no_row_yet_are_being_computed(workspace):
    today = timezone.now().date()
    day(workspace, days_ago(2, today), sent=10)
    assert workspace_health(workspace=workspace, today=today).computing_days == []  # no mail

    campaign = Campaign.objects.create(workspace=workspace, name="Now", status="sending")
    Delivery.objects.create(
        workspace=workspace, campaign=campaign, address="a@mail.test", state="sent",
        sent_at=timezone.now(),
    )  # fmt: skip
    assert workspace_health(workspace=workspace, today=today).computing_days == [
        days_ago(1, today),
        today,
    ]

    day(workspace, days_ago(1, today), sent=0)
    day(workspace, today, sent=1)
    assert workspace_health(workspace=workspace, today=today).computing_days == []


# Domains and listings --------------------------------------------------------------------


def test_domains_show_their_status_and_which_records_pass(workspace):
    SendingDomain.objects.create(
        workspace=workspace, domain="good.example", status="verified", record_states=PASSING
    )
    SendingDomain.objects.create(
        workspace=workspace,
        domain="broken.example",
        status="failing",
        record_states={**PASSING, "dmarc": {"state": "missing"}},
    )
    SendingDomain.objects.create(workspace=workspace, domain="new.example")

    domains = workspace_health(workspace=workspace, today=TODAY).domains

    assert [(d.name, d.status, d.records, d.is_authenticated) for d in domains] == [
        ("broken.example", "failing", [("DKIM", True), ("SPF", True), ("DMARC", False)], False),
        ("good.example", "verified", [("DKIM", True), ("SPF", True), ("DMARC", True)], True),
        ("new.example", "pending", [("DKIM", False), ("SPF", False), ("DMARC", False)], False),
    ]


def test_only_open_listings_of_the_workspaces_ips_count(workspace, zone):
    ip = pool_with_ip(workspace, "192.0.2.10", "ours")
    open_listing = listing(ip, zone)
    listing(ip, DnsblZone.objects.create(name="Old", zone="old.test", kind="ip"),
            delisted_at=timezone.now())  # fmt: skip
    other = pool_with_ip(WorkspaceFactory(), "192.0.2.99", "theirs")
    listing(other, zone)

    assert workspace_health(workspace=workspace, today=TODAY).listings == [open_listing]


# The panel -------------------------------------------------------------------------------


def test_the_dashboard_loads_the_panel(workspace, member_client):
    client = member_client(workspace, role="viewer")

    response = client.get(reverse("accounts:dashboard", kwargs={"workspace_slug": workspace.slug}))

    assert f'hx-get="{panel_url(workspace)}"' in response.content.decode()


def test_the_panel_shows_the_figures_the_lines_and_an_accessible_sparkline(
    workspace, member_client, zone
):
    today = timezone.now().date()
    day(workspace, today, sent=10_000, delivered=9_700, bounced=300, complained=12,
        unique_human_opens=2_425, unique_human_clicks=485)  # fmt: skip
    day(workspace, days_ago(1, today), sent=0)
    SendingDomain.objects.create(
        workspace=workspace, domain="shop.example", status="verified", record_states=PASSING
    )
    listing(pool_with_ip(workspace, "192.0.2.10", "ours"), zone)

    html = member_client(workspace, role="viewer").get(panel_url(workspace)).content.decode()

    assert re.search(r'data-fact="sent">10000<', html)
    assert re.search(r'data-fact="bounce_rate">3\.00%', html)
    assert re.search(r'data-fact="complaint_rate">0\.120%', html)
    assert re.search(r'data-fact="open_rate">25\.0%', html)
    assert re.search(r'data-fact="click_rate">5\.0%', html)
    assert 'data-level="warning">At risk</span>' in html  # both rates over their first line
    assert "keep complaints under it, and never let them reach 0.3%" in html
    svg = re.search(r"<svg[^>]*>.*?</svg>", html, re.S).group(0)
    assert 'role="img"' in svg
    assert 'aria-labelledby="deliverability-spark-title"' in svg
    assert re.search(
        r'<title id="deliverability-spark-title">Messages sent per day .*10000 in all', svg
    )
    assert svg.count("<rect") == 1
    assert "<script" not in html
    assert 'data-record="DMARC" data-pass="yes"' in html
    assert "1 listing" in html
    assert "192.0.2.10 on Test blocklist" in html
    assert "being computed" not in html


def test_another_workspaces_facts_never_show(workspace, member_client, zone):
    other = WorkspaceFactory()
    for n in (0, 5):
        day(other, days_ago(n, timezone.now().date()), sent=777_777, bounced=666_666)
    SendingDomain.objects.create(workspace=other, domain="theirs.example", status="verified")
    listing(pool_with_ip(other, "192.0.2.99", "theirs"), zone)
    day(workspace, timezone.now().date(), sent=10, delivered=10)

    html = member_client(workspace).get(panel_url(workspace)).content.decode()

    assert re.search(r'data-fact="sent">10<', html)
    for foreign in ("777777", "666666", "theirs.example", "192.0.2.99", "1 listing"):
        assert foreign not in html
    assert "Not listed" in html


def test_the_panel_is_for_members_only(workspace, member_client):
    stranger = member_client(WorkspaceFactory())

    assert stranger.get(panel_url(workspace)).status_code == 404


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_query_count_does_not_grow_with_days_domains_or_listings(
    workspace, member_client, zone
):
    client = member_client(workspace)
    today = timezone.now().date()
    day(workspace, today, sent=1)
    day(workspace, days_ago(1, today), sent=1)
    ip = pool_with_ip(workspace, "192.0.2.10", "ours")
    client.get(panel_url(workspace))  # the membership's last use is stamped once
    few = _queries(client, panel_url(workspace))
    assert few <= 7  # session, user, membership; days, domains, pool, listings

    for n in range(2, 30):
        day(workspace, days_ago(n, today), sent=n, delivered=n, bounced=1)
    for n in range(6):
        SendingDomain.objects.create(
            workspace=workspace, domain=f"d{n}.example", status="verified", record_states=PASSING
        )
    for n in range(4):
        listing(ip, DnsblZone.objects.create(name=f"Zone {n}", zone=f"z{n}.test", kind="ip"))

    assert _queries(client, panel_url(workspace)) == few
