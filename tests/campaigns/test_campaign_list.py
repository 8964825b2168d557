"""The campaign list: filter tabs with counts, tags, audiences, and duplicate and archive."""

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from campaigns import selectors, services
from campaigns.ab import ab_test_save
from campaigns.models import AbTest, Campaign
from campaigns.starters import STARTERS
from contacts.models import Segment
from tests.factories import ContactListFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def _campaign(workspace, name: str = "Spring sale", status: str = "draft", **fields) -> Campaign:
    campaign = services.campaign_create(
        workspace=workspace, name=name, starter=STARTERS[0], acting_user=None
    )
    if fields or status != "draft":
        Campaign.objects.filter(pk=campaign.pk).update(status=status, **fields)
        campaign.refresh_from_db()
    return campaign


def _audience(campaign, tags=(), **chosen) -> Campaign:
    return services.campaign_audience_update(
        campaign=campaign,
        include_lists=chosen.get("include_lists", []),
        include_segments=chosen.get("include_segments", []),
        exclude_lists=chosen.get("exclude_lists", []),
        exclude_segments=chosen.get("exclude_segments", []),
        tags=list(tags),
        acting_user=None,
    )


def _url(name: str, workspace, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


def _row_names(content: bytes) -> list[str]:
    return re.findall(
        r'<tr id="campaign-\d+">\s*<td>\s*<a [^>]*><strong>([^<]+)</strong>', content.decode()
    )


def _tab_counts(content: bytes) -> dict[str, int]:
    found = re.findall(r'>(\w+) <span class="tab-count">(\d+)</span>', content.decode())
    return {label: int(count) for label, count in found}


@pytest.fixture
def every_state(workspace) -> dict[str, Campaign]:
    campaigns = {
        status: _campaign(workspace, name=f"{status.title()} one", status=status)
        for status in ("draft", "scheduled", "sending", "paused", "sent", "cancelled")
    }
    campaigns["archived"] = _campaign(
        workspace, name="Archived one", status="sent", archived_at=timezone.now()
    )
    return campaigns


# Filter tabs -------------------------------------------------------------------------------


def test_tabs_count_each_state_and_archived_ones_only_under_archived(
    workspace, member_client, every_state
):
    response = member_client(workspace, Role.VIEWER).get(_url("campaign_list", workspace))
    assert _tab_counts(response.content) == {
        "All": 6,
        "Drafts": 1,
        "Scheduled": 1,
        "Sending": 2,
        "Sent": 1,
        "Cancelled": 1,
        "Archived": 1,
    }
    assert "Archived one" not in _row_names(response.content)
    assert len(_row_names(response.content)) == 6


@pytest.mark.parametrize(
    ("state", "names"),
    [
        ("draft", ["Draft one"]),
        ("scheduled", ["Scheduled one"]),
        ("sending", ["Sending one", "Paused one"]),
        ("sent", ["Sent one"]),
        ("cancelled", ["Cancelled one"]),
        ("archived", ["Archived one"]),
    ],
)
def test_each_tab_lists_its_campaigns(workspace, member_client, every_state, state, names):
    response = member_client(workspace, Role.VIEWER).get(
        _url("campaign_list", workspace), {"state": state}
    )
    assert sorted(_row_names(response.content)) == sorted(names)
    assert re.search(
        rf'href="[^"]*state={state}"[^>]*aria-current="page"', response.content.decode()
    )


def test_an_unknown_state_shows_all(workspace, member_client, every_state):
    response = member_client(workspace, Role.VIEWER).get(
        _url("campaign_list", workspace), {"state": "<script>"}
    )
    assert response.status_code == 200
    assert len(_row_names(response.content)) == 6


def test_an_empty_tab_says_so_without_the_first_campaign_prompt(workspace, member_client):
    _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).get(
        _url("campaign_list", workspace), {"state": "archived"}
    )
    assert b"No campaigns here." in response.content
    assert b"Create your first campaign" not in response.content
    assert b"New campaign" in response.content


def test_tag_filter_narrows_rows_and_counts(workspace, member_client):
    _audience(_campaign(workspace, name="Tagged draft"), tags=["Spring"])
    tagged_sent = _audience(_campaign(workspace, name="Tagged sent"), tags=["spring", "News"])
    Campaign.objects.filter(pk=tagged_sent.pk).update(status="sent")
    _audience(_campaign(workspace, name="Untagged"), tags=["News"])
    client = member_client(workspace, Role.VIEWER)
    page = client.get(_url("campaign_list", workspace))
    assert re.search(
        r'<option value="News">News</option>\s*<option value="Spring">', page.content.decode()
    )
    response = client.get(_url("campaign_list", workspace), {"tag": "Spring"})
    assert sorted(_row_names(response.content)) == ["Tagged draft", "Tagged sent"]
    counts = _tab_counts(response.content)
    assert (counts["All"], counts["Drafts"], counts["Sent"]) == (2, 1, 1)
    # The tabs keep the tag.
    assert f'href="/w/{workspace.slug}/campaigns/?state=sent&amp;tag=Spring"' in (
        response.content.decode()
    )


def test_scheduled_time_shows_in_the_workspace_time_zone(member_client):
    workspace = WorkspaceFactory(time_zone="America/New_York")
    at = dt.datetime(2031, 1, 15, 15, 30, tzinfo=dt.UTC)
    _campaign(workspace, name="Later", status="scheduled", scheduled_at=at)
    response = member_client(workspace, Role.VIEWER).get(_url("campaign_list", workspace))
    assert "15 Jan 2031, 10:30 EST" in response.content.decode()


def test_rows_name_the_audience_and_tags(workspace, member_client):
    news = ContactListFactory(workspace=workspace, name="Newsletter")
    staff = ContactListFactory(workspace=workspace, name="Staff")
    vips = Segment.objects.create(workspace=workspace, name="VIPs", definition={})
    _audience(
        _campaign(workspace),
        include_lists=[news],
        include_segments=[vips],
        exclude_lists=[staff],
        tags=["Spring"],
    )
    _campaign(workspace, name="Nobody yet")
    content = member_client(workspace, Role.VIEWER).get(_url("campaign_list", workspace))
    text = content.content.decode()
    assert re.search(r"Lists:</span>\s*Newsletter", text)
    assert re.search(r"Segments:</span>\s*VIPs", text)
    assert re.search(r"Leaving out:</span>\s*Staff", text)
    assert "No audience yet" in text
    assert 'class="campaign-tag"' in text
    assert "tag=Spring" in text


def test_list_queries_stay_the_same_however_many_campaigns(
    workspace, member_client, django_assert_max_num_queries
):
    news = ContactListFactory(workspace=workspace)
    vips = Segment.objects.create(workspace=workspace, name="VIPs", definition={})
    client = member_client(workspace, Role.EDITOR)

    def add(count: int) -> None:
        for n in range(count):
            _audience(
                _campaign(workspace, name=f"Campaign {n}"),
                include_lists=[news],
                include_segments=[vips],
                exclude_lists=[ContactListFactory(workspace=workspace)],
                tags=[f"tag {n}"],
            )

    add(2)
    client.get(_url("campaign_list", workspace))  # warm the session and membership
    with django_assert_max_num_queries(11) as few:
        client.get(_url("campaign_list", workspace))
    add(20)
    with django_assert_max_num_queries(11) as many:
        response = client.get(_url("campaign_list", workspace))
    assert len(_row_names(response.content)) == 22
    assert len(many.captured_queries) == len(few.captured_queries)


def test_long_lists_are_paged(workspace, member_client):
    Campaign.objects.bulk_create(
        Campaign(workspace=workspace, name=f"Bulk {n}")
        for n in range(selectors.CAMPAIGN_PAGE_SIZE + 3)
    )
    client = member_client(workspace, Role.VIEWER)
    first = client.get(_url("campaign_list", workspace))
    assert len(_row_names(first.content)) == selectors.CAMPAIGN_PAGE_SIZE
    assert b"Page 1 of 2" in first.content
    second = client.get(_url("campaign_list", workspace), {"page": "2"})
    assert len(_row_names(second.content)) == 3


def test_row_actions_are_for_editors_and_fit_the_state(workspace, member_client, every_state):
    editor = member_client(workspace, Role.EDITOR)
    text = editor.get(_url("campaign_list", workspace)).content.decode()

    def row(campaign) -> str:
        return re.search(rf'<tr id="campaign-{campaign.pk}">.*?</tr>', text, re.S).group(0)

    for state in ("draft", "sent", "cancelled"):
        assert ">Archive<" in row(every_state[state])
    for state in ("scheduled", "sending", "paused"):
        assert ">Archive<" not in row(every_state[state])
        assert ">Duplicate<" in row(every_state[state])
    archived = editor.get(_url("campaign_list", workspace), {"state": "archived"})
    assert ">Unarchive<" in archived.content.decode()
    viewer = member_client(workspace, Role.VIEWER).get(_url("campaign_list", workspace))
    assert b">Duplicate<" not in viewer.content
    assert b">Archive<" not in viewer.content


# Duplicate ---------------------------------------------------------------------------------


def test_duplicate_copies_content_layout_audience_tags_and_ab_design(workspace, user):
    news, staff = ContactListFactory(workspace=workspace), ContactListFactory(workspace=workspace)
    vips = Segment.objects.create(workspace=workspace, name="VIPs", definition={})
    original = _campaign(workspace)
    services.campaign_update(
        campaign=original, acting_user=None, subject="Hello", html="<p>Body</p>", from_name="Shop"
    )
    _audience(
        original,
        include_lists=[news],
        exclude_segments=[vips],
        exclude_lists=[staff],
        tags=["Spring"],
    )
    ab_test_save(
        campaign=original,
        enabled=True,
        test_share_percent=30,
        metric="clicks",
        wait_minutes=120,
        variants=[{"subject": "One"}, {"subject": "Two", "html": "<p>Two</p>"}],
    )
    copy = services.campaign_duplicate(campaign=original, acting_user=user)
    assert copy.pk != original.pk
    assert copy.name == "Copy of Spring sale"
    assert copy.status == "draft"
    assert (copy.subject, copy.html, copy.from_name) == ("Hello", "<p>Body</p>", "Shop")
    assert copy.template == original.template
    assert copy.created_by == user
    assert list(copy.include_lists.all()) == [news]
    assert list(copy.exclude_lists.all()) == [staff]
    assert list(copy.exclude_segments.all()) == [vips]
    assert copy.tags == ["Spring"]
    ab_test = AbTest.objects.get(campaign=copy)
    assert (ab_test.test_share_percent, ab_test.metric, ab_test.wait_minutes) == (30, "clicks", 120)
    assert list(copy.variants.values_list("label", "subject", "html")) == [
        ("A", "One", ""),
        ("B", "Two", "<p>Two</p>"),
    ]
    assert original.variants.count() == 2  # the original keeps its own
    entry = AuditEntry.objects.get(verb="campaign.duplicated", target_id=str(copy.pk))
    assert entry.details["source_id"] == original.pk


def test_duplicate_of_a_sent_archived_campaign_is_a_fresh_draft(workspace):
    original = _campaign(
        workspace,
        status="sent",
        archived_at=timezone.now(),
        scheduled_at=timezone.now() - dt.timedelta(days=1),
        name="x" * 200,
    )
    AbTest.objects.create(workspace=workspace, campaign=original, decided_at=timezone.now())
    copy = services.campaign_duplicate(campaign=original, acting_user=None)
    assert copy.status == "draft"
    assert copy.scheduled_at is None
    assert copy.archived_at is None
    assert len(copy.name) == 200
    assert copy.name.startswith("Copy of x")
    assert AbTest.objects.get(campaign=copy).decided_at is None


def test_duplicate_view_opens_the_copy(workspace, member_client):
    original = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url("campaign_duplicate", workspace, campaign_id=original.pk))
    copy = Campaign.objects.get(workspace=workspace, name="Copy of Spring sale")
    assert response.status_code == 302
    assert response["Location"] == _url("campaign_edit", workspace, campaign_id=copy.pk)
    assert copy.created_by == client.user


def test_duplicate_and_archive_are_post_only_for_editors(workspace, member_client):
    campaign = _campaign(workspace)
    viewer = member_client(workspace, Role.VIEWER)
    assert (
        viewer.post(_url("campaign_duplicate", workspace, campaign_id=campaign.pk)).status_code
        == 403
    )
    assert (
        viewer.post(_url("campaign_archive", workspace, campaign_id=campaign.pk)).status_code == 403
    )
    editor = member_client(workspace, Role.EDITOR)
    assert (
        editor.get(_url("campaign_duplicate", workspace, campaign_id=campaign.pk)).status_code
        == 405
    )
    assert (
        editor.get(_url("campaign_archive", workspace, campaign_id=campaign.pk)).status_code == 405
    )
    assert Campaign.objects.count() == 1
    campaign.refresh_from_db()
    assert campaign.archived_at is None


def test_duplicate_and_archive_of_another_workspace_campaign_are_404(workspace, member_client):
    foreign = _campaign(WorkspaceFactory())
    client = member_client(workspace, Role.OWNER)
    assert (
        client.post(_url("campaign_duplicate", workspace, campaign_id=foreign.pk)).status_code
        == 404
    )
    assert (
        client.post(_url("campaign_archive", workspace, campaign_id=foreign.pk)).status_code == 404
    )
    foreign.refresh_from_db()
    assert foreign.archived_at is None
    assert Campaign.objects.count() == 1


# Archive -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["draft", "sent", "cancelled"])
def test_archive_and_unarchive_are_audited(workspace, user, status):
    campaign = _campaign(workspace, status=status)
    services.campaign_archive(campaign=campaign, archived=True, acting_user=user)
    campaign.refresh_from_db()
    assert campaign.archived_at is not None
    services.campaign_archive(campaign=campaign, archived=False, acting_user=user)
    campaign.refresh_from_db()
    assert campaign.archived_at is None
    verbs = list(
        AuditEntry.objects.filter(target_id=str(campaign.pk), actor=user).values_list(
            "verb", flat=True
        )
    )
    assert sorted(verbs) == ["campaign.archived", "campaign.unarchived"]


def test_archiving_twice_changes_nothing(workspace):
    campaign = _campaign(workspace)
    services.campaign_archive(campaign=campaign, archived=True, acting_user=None)
    first = Campaign.objects.get(pk=campaign.pk).archived_at
    services.campaign_archive(campaign=campaign, archived=True, acting_user=None)
    assert Campaign.objects.get(pk=campaign.pk).archived_at == first
    assert AuditEntry.objects.filter(verb="campaign.archived").count() == 1


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        ("scheduled", "unschedule or cancel"),
        ("sending", "cancel it or wait"),
        ("paused", "cancel it or wait"),
    ],
)
def test_a_campaign_on_its_way_out_cannot_be_archived(workspace, status, advice):
    campaign = _campaign(workspace, status=status)
    with pytest.raises(ApplicationError, match=advice):
        services.campaign_archive(campaign=campaign, archived=True, acting_user=None)
    assert Campaign.objects.get(pk=campaign.pk).archived_at is None


def test_archive_view_returns_to_the_same_tab_and_tag(workspace, member_client):
    campaign = _audience(_campaign(workspace), tags=["Spring"])
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_archive", workspace, campaign_id=campaign.pk),
        {"archived": "1", "state": "draft", "tag": "Spring"},
    )
    assert response.status_code == 302
    assert response["Location"] == _url("campaign_list", workspace) + "?state=draft&tag=Spring"
    campaign.refresh_from_db()
    assert campaign.archived_at is not None
    page = client.get(_url("campaign_list", workspace), {"state": "archived"})
    assert "“Spring sale” archived." in page.content.decode()
    assert _row_names(page.content) == ["Spring sale"]
    client.post(_url("campaign_archive", workspace, campaign_id=campaign.pk), {"archived": "0"})
    campaign.refresh_from_db()
    assert campaign.archived_at is None


def test_archive_view_explains_a_refusal(workspace, member_client):
    campaign = _campaign(workspace, status="sending")
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_archive", workspace, campaign_id=campaign.pk), {"archived": "1"}, follow=True
    )
    assert "cancel it or wait until it is sent" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.archived_at is None
