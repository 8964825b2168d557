"""The campaign report and the Reports landing: figures and rates from the roll-up, a fixed
number of queries whatever the campaign's size, the chart and its table, empty states, the
A/B winner, CSV exports (formula-safe), workspace scoping, and the links to the report."""

import csv
import datetime as dt
import io
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign
from sending.models import CampaignSend
from tests.tracking.report_seed import BROWSER, LINKS, report_campaign_seed
from tracking.ingest import Hit, hits_store
from tracking.models import CampaignRollup
from tracking.rollups import campaign_rollup_compute
from tracking.views import csv_cell

pytestmark = pytest.mark.django_db


def _url(campaign, **query) -> str:
    url = reverse(
        "tracking:campaign_report",
        kwargs={"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk},
    )
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _fact(html: str, name: str) -> str:
    match = re.search(rf'data-fact="{name}"[^>]*>([^<]*)<', html)
    assert match, name
    return match.group(1).strip()


@pytest.fixture
def seeded(workspace):
    return report_campaign_seed(workspace)


@pytest.fixture
def viewer(workspace, member_client):
    return member_client(workspace, role="viewer")


def test_report_shows_headline_figures_and_rates(seeded, viewer):
    response = viewer.get(_url(seeded.campaign))

    assert response.status_code == 200
    html = response.content.decode()
    # 16 delivered of 23 handed over; 12 recipients opened, 10 of them people; 6 clicked.
    assert (_fact(html, "delivered"), _fact(html, "delivered_rate")) == ("16", "69.6%")
    assert (_fact(html, "unique_opens"), _fact(html, "unique_human_opens")) == ("12", "10")
    assert (_fact(html, "open_rate"), _fact(html, "click_rate")) == ("75.0%", "37.5%")
    assert _fact(html, "click_to_open") == "50.0%"
    assert (_fact(html, "opens"), _fact(html, "human_opens")) == ("15", "11")
    assert (_fact(html, "clicks"), _fact(html, "human_clicks")) == ("8", "6")
    assert _fact(html, "bounce_rate") == "21.7%"  # 5 of 23
    assert (_fact(html, "unsubscribed"), _fact(html, "unsubscribe_rate")) == ("2", "12.5%")
    assert _fact(html, "complaint_rate") == "12.5%"
    assert "1 hard (4.3%)" in html
    assert "2 unknown (8.7%)" in html
    deliveries = reverse(
        "sending:campaign_deliveries",
        kwargs={
            "workspace_slug": seeded.campaign.workspace.slug,
            "campaign_id": seeded.campaign.pk,
        },
    )
    assert f'href="{deliveries}?state=bounced" data-fact="bounced"' in html
    assert f'href="{deliveries}?state=complained" data-fact="complained"' in html
    assert re.search(r'data-seconds="\d+">figures computed \d+ seconds? ago', html)


def test_report_draws_the_timeline_with_its_data_table(seeded, viewer):
    html = viewer.get(_url(seeded.campaign)).content.decode()

    charts = re.findall(r"<svg class=\"chart\".*?</svg>", html, re.S)
    assert len(charts) == 2
    opens = charts[0]
    assert "<title>Opens</title>" in opens
    assert re.search(r'role="img" aria-label="Opens per hour, All opens: 15; By people: 11', opens)
    assert len(re.findall(r'class="chart-bar chart-total"', opens)) >= 5
    assert 'class="chart-bar chart-human"' in opens
    assert "<script" not in html.split('<main id="main"', 1)[1]
    # The table behind the chart: rows of the hours with activity, totals as the chart's.
    details = html.split('<details class="report-data">', 1)[1].split("</details>", 1)[0]
    rows = re.findall(r'<tr><td><time datetime="[^"]+">[^<]+</time></td>(.*?)</tr>', details)
    opens_sum = sum(int(re.findall(r'"num">(\d+)<', row)[0]) for row in rows)
    assert opens_sum == 15


def test_report_tables_links_providers_and_the_ab_winner(seeded, viewer):
    html = viewer.get(_url(seeded.campaign)).content.decode()

    links = html.split('class="table report-links"', 1)[1].split("</table>", 1)[0]
    assert LINKS[0] in links
    assert LINKS[1] in links
    providers = html.split('class="table report-providers"', 1)[1].split("</table>", 1)[0]
    assert 'data-provider="google"' in providers
    assert 'data-provider="unknown"' in providers
    assert "Google (Gmail, Workspace)" in providers
    variants = html.split('class="table report-variants"', 1)[1].split("</table>", 1)[0]
    winner = seeded.variants["B"].pk
    assert f'<tr data-variant="{winner}" class="report-winner">' in variants
    assert 'data-variant="rest"' in variants
    assert _fact(html, "winner") == "Variant B"


def _more_activity(seeded, *, links: int, hours: int) -> None:
    hits = []
    delivery = seeded.deliveries[1]
    for n in range(hours):
        at = seeded.sent_at + dt.timedelta(hours=2 + n, minutes=30)
        hits.append(Hit("open", delivery.pk, "", at, "198.51.100.23", BROWSER, "GET", uuid.uuid4()))
    for n in range(links):
        at = seeded.sent_at + dt.timedelta(hours=2, minutes=n)
        url = f"https://shop.example/item/{n}"
        hits.append(
            Hit("click", delivery.pk, url, at, "198.51.100.23", BROWSER, "GET", uuid.uuid4())
        )
    hits_store(hits)
    campaign_rollup_compute(campaign_id=seeded.campaign.pk)


def test_report_reads_a_fixed_number_of_queries_and_no_raw_rows(seeded, viewer):
    campaign_rollup_compute(campaign_id=seeded.campaign.pk)
    viewer.get(_url(seeded.campaign))  # the membership's last use is written once a minute

    with CaptureQueriesContext(connection) as small:
        assert viewer.get(_url(seeded.campaign)).status_code == 200
    _more_activity(seeded, links=40, hours=30)
    with CaptureQueriesContext(connection) as large:
        response = viewer.get(_url(seeded.campaign))
    assert response.status_code == 200
    assert 'shop.example/item/39"' in response.content.decode()

    assert len(small) == len(large) <= 9
    tables = " ".join(query["sql"] for query in large.captured_queries)
    assert "tracking_campaignrollup" in tables
    assert "tracking_hourlyactivity" in tables
    assert "tracking_linkactivity" in tables
    for raw in ("sending_delivery", "tracking_event", "tracking_deliveryactivity"):
        assert raw not in tables


def test_a_report_without_a_rollup_computes_it_on_the_spot(seeded, viewer):
    assert not CampaignRollup.objects.exists()
    html = viewer.get(_url(seeded.campaign)).content.decode()
    assert _fact(html, "delivered") == "16"
    assert CampaignRollup.objects.filter(campaign=seeded.campaign).exists()


def test_a_draft_has_no_report_yet(workspace, viewer):
    draft = Campaign.objects.create(workspace=workspace, name="Draft")
    html = viewer.get(_url(draft)).content.decode()
    assert "Not sent yet" in html
    assert not CampaignRollup.objects.exists()


def test_a_sent_campaign_without_opens_says_so(workspace, viewer):
    seeded = report_campaign_seed(workspace)
    from tracking.models import DeliveryActivity, HourlyActivity, LinkActivity, LinkClick

    for model in (LinkClick, LinkActivity, HourlyActivity, DeliveryActivity):
        model.objects.filter(campaign=seeded.campaign).delete()
    html = viewer.get(_url(seeded.campaign)).content.decode()
    assert 'data-empty="opens"' in html
    assert "No opens yet" in html
    assert 'data-empty="links"' in html
    assert "<svg" not in html.split('<main id="main"', 1)[1]


def test_another_workspaces_campaign_is_404(seeded, member_client):
    from tests.factories import WorkspaceFactory

    outsider = member_client(WorkspaceFactory())
    url = reverse(
        "tracking:campaign_report",
        kwargs={
            "workspace_slug": outsider.membership.workspace.slug,
            "campaign_id": seeded.campaign.pk,
        },
    )
    assert outsider.get(url).status_code == 404
    assert outsider.get(_url(seeded.campaign)).status_code == 404


# --- CSV ---------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize(
    ("table", "header"),
    [
        ("summary", ["figure", "count", "rate", "rate_of"]),
        ("links", ["url", "clicks", "human_clicks", "unique_clicks", "unique_human_clicks"]),
        ("providers", ["provider", "deliveries", "handed_over", "delivered"]),
        ("variants", ["variant", "subject", "winner", "deliveries"]),
        ("timeline", ["hour_utc", "opens", "human_opens", "clicks"]),
    ],
)
def test_each_table_downloads_as_csv(seeded, viewer, table, header):
    response = viewer.get(_url(seeded.campaign, format="csv", table=table))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == (
        f'attachment; filename="campaign-{seeded.campaign.pk}-{table}.csv"'
    )
    rows = _csv(response)
    assert rows[0][: len(header)] == header
    assert len(rows) > 1


def test_csv_figures_match_the_page_and_formulas_are_defused(seeded, viewer):
    summary = {row[0]: row[1:] for row in _csv(viewer.get(_url(seeded.campaign, format="csv")))}
    assert summary["Delivered"] == ["16", "0.6957", "handed over"]
    assert summary["Unique clicks by people"] == ["4", "0.2500", "delivered"]

    links = _csv(viewer.get(_url(seeded.campaign, format="csv", table="links")))
    urls = [row[0] for row in links[1:]]
    assert "'" + LINKS[2] in urls
    assert LINKS[2] not in urls
    assert LINKS[0] in urls

    timeline = _csv(viewer.get(_url(seeded.campaign, format="csv", table="timeline")))
    assert sum(int(row[1]) for row in timeline[1:]) == 15

    variants = _csv(viewer.get(_url(seeded.campaign, format="csv", table="variants")))
    assert [row[0] for row in variants[1:] if row[2] == "yes"] == ["Variant B"]


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("=SUM(A1:A2)", "'=SUM(A1:A2)"),
        ("+1", "'+1"),
        ("-1+2", "'-1+2"),
        ("@cmd", "'@cmd"),
        ("\t=1", "'\t=1"),
        ("https://shop.example/", "https://shop.example/"),
        (-3, -3),
        (12, 12),
    ],
)
def test_csv_cells_that_start_like_formulas_are_quoted(value, safe):
    assert csv_cell(value) == safe


def test_an_unknown_table_is_404(seeded, viewer):
    assert viewer.get(_url(seeded.campaign, format="csv", table="secrets")).status_code == 404


# --- The Reports landing and the campaign's page --------------------------------------------


def test_reports_landing_lists_sent_campaigns_with_headline_figures(workspace, viewer):
    seeded = report_campaign_seed(workspace)
    campaign_rollup_compute(campaign_id=seeded.campaign.pk)
    waiting = report_campaign_seed(workspace, name="Summer sale")
    Campaign.objects.create(workspace=workspace, name="A draft")
    other = report_campaign_seed(
        __import__("tests.factories", fromlist=["WorkspaceFactory"]).WorkspaceFactory(),
        name="Not ours",
    )
    campaign_rollup_compute(campaign_id=other.campaign.pk)

    html = viewer.get(reverse("tracking:reports", kwargs={"workspace_slug": workspace.slug}))
    html = html.content.decode()

    row = html.split(f'id="report-{seeded.campaign.pk}"', 1)[1].split("</tr>", 1)[0]
    assert f'href="{_url(seeded.campaign)}"' in row
    assert _fact(row, "open_rate") == "75.0%"
    assert _fact(row, "click_rate") == "37.5%"
    assert "people 62.5%" in row  # 10 of 16 opened by people
    waiting_row = html.split(f'id="report-{waiting.campaign.pk}"', 1)[1].split("</tr>", 1)[0]
    assert "being computed" in waiting_row
    assert "A draft" not in html
    assert "Not ours" not in html
    assert "Nothing to report yet" not in html


def test_reports_landing_keeps_its_empty_state(workspace, viewer):
    Campaign.objects.create(workspace=workspace, name="A draft")
    html = viewer.get(reverse("tracking:reports", kwargs={"workspace_slug": workspace.slug}))
    assert "Nothing to report yet" in html.content.decode()


def test_reports_landing_reads_a_fixed_number_of_queries(workspace, viewer):
    url = reverse("tracking:reports", kwargs={"workspace_slug": workspace.slug})
    first = report_campaign_seed(workspace)
    campaign_rollup_compute(campaign_id=first.campaign.pk)
    viewer.get(url)
    with CaptureQueriesContext(connection) as one:
        viewer.get(url)
    for n in range(3):
        more = report_campaign_seed(workspace, name=f"More {n}")
        campaign_rollup_compute(campaign_id=more.campaign.pk)
    with CaptureQueriesContext(connection) as four:
        viewer.get(url)
    assert len(one) == len(four)


def test_the_campaigns_delivery_panel_links_to_the_report(seeded, viewer):
    panel = viewer.get(
        reverse(
            "sending:campaign_progress",
            kwargs={
                "workspace_slug": seeded.campaign.workspace.slug,
                "campaign_id": seeded.campaign.pk,
            },
        )
    ).content.decode()
    assert f'<a href="{_url(seeded.campaign)}" data-link="report">Open the report</a>' in panel


def test_a_cancelled_send_still_has_a_report(workspace, viewer):
    seeded = report_campaign_seed(workspace)
    Campaign.objects.filter(pk=seeded.campaign.pk).update(status="cancelled")
    CampaignSend.objects.filter(campaign=seeded.campaign).update(finished_at=timezone.now())
    html = viewer.get(_url(seeded.campaign)).content.decode()
    assert _fact(html, "delivered") == "16"


def test_timelines_longer_than_two_days_use_six_hour_buckets(seeded):
    from tracking.selectors import campaign_report

    short = campaign_report(campaign=seeded.campaign, now=seeded.sent_at + dt.timedelta(hours=30))
    assert short.timeline.bucket == dt.timedelta(hours=1)
    assert len(short.timeline.starts) == 31

    week = campaign_report(campaign=seeded.campaign, now=seeded.sent_at + dt.timedelta(days=9))
    timeline = week.timeline
    assert timeline.bucket == dt.timedelta(hours=6)
    assert len(timeline.starts) == 28  # seven days, no more
    assert sum(row["opens"] for row in timeline.rows) == 15
    assert sum(row["human_clicks"] for row in timeline.rows) == 6
    assert 'aria-label="Opens per 6 hours, All opens: 15; By people: 11' in timeline.opens_chart
