"""Who a campaign goes to: the audience selector, the audience service and the audience tab."""

import re

import pytest
from django.urls import reverse

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from campaigns import services
from campaigns.audience import audience_contacts, audience_count
from campaigns.models import Campaign
from campaigns.starters import STARTERS
from contacts.models import Contact, Segment
from contacts.services.suppressions import suppression_add
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

VIP = {"op": "and", "rules": [{"field": "email", "operator": "ends_with", "value": "@vip.example"}]}


def _campaign(workspace, **audience) -> Campaign:
    campaign = services.campaign_create(
        workspace=workspace, name="Spring sale", starter=STARTERS[0], acting_user=None
    )
    if audience:
        _set_audience(campaign, **audience)
    return campaign


def _set_audience(campaign, tags=(), **chosen) -> Campaign:
    return services.campaign_audience_update(
        campaign=campaign,
        include_lists=chosen.get("include_lists", []),
        include_segments=chosen.get("include_segments", []),
        exclude_lists=chosen.get("exclude_lists", []),
        exclude_segments=chosen.get("exclude_segments", []),
        tags=list(tags),
        acting_user=None,
    )


def _member(contact_list, email: str, status: str = "subscribed", **contact_fields) -> Contact:
    contact = ContactFactory(workspace=contact_list.workspace, email=email, **contact_fields)
    SubscriptionFactory(contact=contact, contact_list=contact_list, status=status)
    return contact


def _segment(workspace, name: str = "VIPs", definition=None) -> Segment:
    return Segment.objects.create(workspace=workspace, name=name, definition=definition or VIP)


def _emails(campaign) -> set[str]:
    return set(audience_contacts(campaign=campaign).values_list("email", flat=True))


def _url(workspace, campaign) -> str:
    return reverse(
        "campaigns:campaign_audience",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": campaign.pk},
    )


# The selector ------------------------------------------------------------------------------


def test_included_list_selects_its_subscribed_members_only(workspace):
    news = ContactListFactory(workspace=workspace)
    _member(news, "in@example.org")
    _member(news, "pending@example.org", status="pending")
    _member(news, "gone@example.org", status="unsubscribed")
    ContactFactory(workspace=workspace, email="nolist@example.org")
    campaign = _campaign(workspace, include_lists=[news])
    assert _emails(campaign) == {"in@example.org"}


def test_included_segment_selects_its_contacts(workspace):
    ContactFactory(workspace=workspace, email="ann@vip.example")
    ContactFactory(workspace=workspace, email="bob@example.org")
    campaign = _campaign(workspace, include_segments=[_segment(workspace)])
    assert _emails(campaign) == {"ann@vip.example"}


def test_a_contact_in_two_included_lists_and_a_segment_counts_once(workspace):
    first, second = ContactListFactory(workspace=workspace), ContactListFactory(workspace=workspace)
    both = _member(first, "both@vip.example")
    SubscriptionFactory(contact=both, contact_list=second)
    _member(second, "second@example.org")
    campaign = _campaign(
        workspace, include_lists=[first, second], include_segments=[_segment(workspace)]
    )
    assert _emails(campaign) == {"both@vip.example", "second@example.org"}
    assert audience_count(campaign=campaign).matching == 2


def test_excluded_list_leaves_out_its_members_even_pending_ones(workspace):
    news, staff = ContactListFactory(workspace=workspace), ContactListFactory(workspace=workspace)
    _member(news, "reader@example.org")
    colleague = _member(news, "colleague@example.org")
    SubscriptionFactory(contact=colleague, contact_list=staff, status="pending")
    campaign = _campaign(workspace, include_lists=[news], exclude_lists=[staff])
    assert _emails(campaign) == {"reader@example.org"}


def test_excluded_segment_leaves_out_its_contacts(workspace):
    news = ContactListFactory(workspace=workspace)
    _member(news, "reader@example.org")
    _member(news, "boss@vip.example")
    campaign = _campaign(workspace, include_lists=[news], exclude_segments=[_segment(workspace)])
    assert _emails(campaign) == {"reader@example.org"}


@pytest.mark.parametrize("status", ["bounced", "complained", "unsubscribed"])
def test_contacts_that_may_not_receive_mail_are_left_out(workspace, status):
    news = ContactListFactory(workspace=workspace)
    _member(news, "ok@example.org")
    _member(news, "not-ok@example.org", status="subscribed")
    Contact.objects.filter(email="not-ok@example.org").update(status=status)
    campaign = _campaign(workspace, include_lists=[news])
    assert _emails(campaign) == {"ok@example.org"}
    assert audience_count(campaign=campaign).matching == 1


def test_suppressed_addresses_are_counted_but_not_sendable(workspace):
    news = ContactListFactory(workspace=workspace)
    for email in ("a@example.org", "b@example.org", "Local@Example.org", "d@example.org"):
        _member(news, email)
    suppression_add(workspace=workspace, email="a@example.org", reason="manual", acting_user=None)
    # Platform-wide, and matched whatever the case of the address.
    suppression_add(workspace=None, email="local@example.org", reason="manual", acting_user=None)
    # Another workspace's suppression does not count here.
    suppression_add(
        workspace=WorkspaceFactory(), email="d@example.org", reason="manual", acting_user=None
    )
    count = audience_count(campaign=_campaign(workspace, include_lists=[news]))
    assert (count.matching, count.suppressed, count.sendable) == (4, 2, 2)


def test_no_included_list_or_segment_selects_nobody(workspace):
    news = ContactListFactory(workspace=workspace)
    _member(news, "a@example.org")
    campaign = _campaign(workspace, exclude_lists=[news])
    assert _emails(campaign) == set()
    assert audience_count(campaign=campaign).matching == 0


# The service -------------------------------------------------------------------------------


def test_audience_update_saves_the_choice_and_tags_and_audits_it(workspace, user):
    news, staff = ContactListFactory(workspace=workspace), ContactListFactory(workspace=workspace)
    vips = _segment(workspace)
    campaign = _campaign(workspace)
    services.campaign_audience_update(
        campaign=campaign,
        include_lists=[news],
        include_segments=[vips],
        exclude_lists=[staff],
        exclude_segments=[],
        tags=["Spring", "newsletter"],
        acting_user=user,
    )
    campaign.refresh_from_db()
    assert list(campaign.include_lists.all()) == [news]
    assert list(campaign.include_segments.all()) == [vips]
    assert list(campaign.exclude_lists.all()) == [staff]
    assert campaign.tags == ["Spring", "newsletter"]
    entry = AuditEntry.objects.get(verb="campaign.audience_updated", target_id=str(campaign.pk))
    assert entry.actor == user
    assert entry.details["include_lists"] == [news.pk]
    assert entry.details["tags"] == ["Spring", "newsletter"]


@pytest.mark.parametrize("kind", ["include_lists", "exclude_lists"])
def test_audience_update_refuses_a_list_of_another_workspace(workspace, kind):
    foreign = ContactListFactory(workspace=WorkspaceFactory(), name="Their secret list")
    campaign = _campaign(workspace)
    with pytest.raises(ApplicationError, match="not in this workspace") as raised:
        _set_audience(campaign, **{kind: [foreign]})
    assert "Their secret list" not in raised.value.message
    assert not campaign.include_lists.exists()
    assert not campaign.exclude_lists.exists()


@pytest.mark.parametrize("kind", ["include_segments", "exclude_segments"])
def test_audience_update_refuses_a_segment_of_another_workspace(workspace, kind):
    foreign = _segment(WorkspaceFactory())
    with pytest.raises(ApplicationError, match="not in this workspace"):
        _set_audience(_campaign(workspace), **{kind: [foreign]})


def test_audience_update_refuses_a_list_both_included_and_excluded(workspace):
    news = ContactListFactory(workspace=workspace, name="News")
    campaign = _campaign(workspace)
    with pytest.raises(ApplicationError, match="“News” cannot be both included and excluded"):
        _set_audience(campaign, include_lists=[news], exclude_lists=[news])
    assert not campaign.include_lists.exists()


def test_audience_update_refuses_a_segment_both_included_and_excluded(workspace):
    vips = _segment(workspace)
    with pytest.raises(ApplicationError, match="both included and excluded"):
        _set_audience(_campaign(workspace), include_segments=[vips], exclude_segments=[vips])


@pytest.mark.parametrize("status", ["scheduled", "sending", "paused", "sent", "cancelled"])
def test_audience_of_a_campaign_that_left_the_draft_state_is_fixed(workspace, status):
    news = ContactListFactory(workspace=workspace)
    campaign = _campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    with pytest.raises(ApplicationError, match="Only draft campaigns"):
        _set_audience(campaign, include_lists=[news])
    assert not campaign.include_lists.exists()


def test_tags_are_trimmed_and_deduplicated_ignoring_case(workspace):
    campaign = _set_audience(
        _campaign(workspace), tags=["  Spring  sale ", "spring SALE", "", "  ", "News", "news"]
    )
    assert campaign.tags == ["Spring sale", "News"]


def test_tags_take_the_spelling_the_workspace_already_uses(workspace):
    _set_audience(_campaign(workspace), tags=["Newsletter"])
    campaign = _set_audience(_campaign(workspace), tags=["newsletter", "Fresh"])
    assert campaign.tags == ["Newsletter", "Fresh"]


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ([f"tag{n}" for n in range(21)], "at most 20 tags"),
        (["x" * 41], "at most 40 characters"),
        (["a,b"], "commas"),
    ],
)
def test_bad_tags_are_refused(workspace, tags, message):
    campaign = _campaign(workspace)
    with pytest.raises(ApplicationError, match=message):
        _set_audience(campaign, tags=tags)
    campaign.refresh_from_db()
    assert campaign.tags == []


def test_twenty_tags_of_forty_characters_are_fine(workspace):
    tags = [f"{n:02d}" + "x" * 38 for n in range(20)]
    assert _set_audience(_campaign(workspace), tags=tags).tags == tags


# The tab -----------------------------------------------------------------------------------


def test_tab_offers_lists_with_subscriber_counts_and_segments(workspace, member_client):
    news = ContactListFactory(workspace=workspace, name="Newsletter")
    _member(news, "a@example.org")
    _member(news, "b@example.org")
    _member(news, "c@example.org", status="pending")
    _segment(workspace, name="Big spenders")
    ContactListFactory(workspace=WorkspaceFactory(), name="Foreign list")
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).get(_url(workspace, campaign))
    content = response.content.decode()
    assert response.status_code == 200
    assert "Newsletter" in content
    assert "2 subscribers" in content
    assert "Big spenders" in content
    assert "Foreign list" not in content
    assert f'name="include_lists" value="{news.pk}"' in content
    assert f'name="exclude_lists" value="{news.pk}"' in content
    assert 'hx-trigger="change"' in content
    assert "Save audience" in content


def test_tab_without_lists_or_segments_links_to_create_them(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    content = client.get(_url(workspace, campaign)).content.decode()
    assert "No lists or segments yet" in content
    assert reverse("contacts:list_create", kwargs={"workspace_slug": workspace.slug}) in content
    ContactListFactory(workspace=workspace)
    content = client.get(_url(workspace, campaign)).content.decode()
    assert "No segments yet" in content
    assert reverse("contacts:segment_new", kwargs={"workspace_slug": workspace.slug}) in content


def test_post_saves_the_audience_and_tags(workspace, member_client):
    news, staff = ContactListFactory(workspace=workspace), ContactListFactory(workspace=workspace)
    vips = _segment(workspace)
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url(workspace, campaign),
        {
            "include_lists": [news.pk],
            "include_segments": [vips.pk],
            "exclude_lists": [staff.pk],
            "tags": "Spring, newsletter, spring",
        },
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert list(campaign.include_lists.all()) == [news]
    assert list(campaign.exclude_lists.all()) == [staff]
    assert list(campaign.include_segments.all()) == [vips]
    assert campaign.tags == ["Spring", "newsletter"]
    page = client.get(_url(workspace, campaign)).content.decode()
    assert "Audience saved." in page
    assert re.search(rf'name="include_lists" value="{news.pk}"[^>]*checked', page)
    assert 'value="Spring, newsletter"' in page


def test_change_saves_and_answers_with_the_live_count(workspace, member_client):
    news = ContactListFactory(workspace=workspace)
    for email in ("a@example.org", "b@example.org", "c@example.org"):
        _member(news, email)
    suppression_add(workspace=workspace, email="c@example.org", reason="manual", acting_user=None)
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign),
        {"include_lists": [news.pk], "tags": ""},
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<section id="audience-count"')
    assert '<dd id="audience-matching">3</dd>' in content
    assert '<dd id="audience-suppressed">1</dd>' in content
    assert '<dd id="audience-sendable">2</dd>' in content
    assert "Saved." in content
    assert list(campaign.include_lists.all()) == [news]


def test_count_panel_loads_by_htmx_for_viewers_too(workspace, member_client):
    news = ContactListFactory(workspace=workspace)
    _member(news, "a@example.org")
    campaign = _campaign(workspace, include_lists=[news])
    client = member_client(workspace, Role.VIEWER)
    page = client.get(_url(workspace, campaign)).content.decode()
    assert 'hx-trigger="load"' in page
    panel = client.get(_url(workspace, campaign), headers={"HX-Request": "true"})
    assert '<dd id="audience-sendable">1</dd>' in panel.content.decode()
    assert 'hx-trigger="load"' not in panel.content.decode()  # no reload loop


def test_refused_htmx_change_says_why_and_saves_nothing(workspace, member_client):
    news = ContactListFactory(workspace=workspace, name="News")
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign),
        {"include_lists": [news.pk], "exclude_lists": [news.pk]},
        headers={"HX-Request": "true"},
    )
    content = response.content.decode()
    assert response.status_code == 200  # htmx swaps only successful answers
    assert "cannot be both included and excluded" in content
    assert "Not saved" in content
    assert not campaign.include_lists.exists()


def test_refused_post_keeps_what_was_ticked_and_typed(workspace, member_client):
    news = ContactListFactory(workspace=workspace, name="News")
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign),
        {"include_lists": [news.pk], "exclude_lists": [news.pk], "tags": "keep, these"},
    )
    content = response.content.decode()
    assert response.status_code == 400
    assert "cannot be both included and excluded" in content
    assert re.search(rf'name="include_lists" value="{news.pk}"[^>]*checked', content)
    assert re.search(rf'name="exclude_lists" value="{news.pk}"[^>]*checked', content)
    assert 'value="keep, these"' in content


def test_posted_id_of_another_workspace_is_refused(workspace, member_client):
    foreign = ContactListFactory(workspace=WorkspaceFactory())
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign), {"include_lists": [foreign.pk]}
    )
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not campaign.include_lists.exists()


def test_viewer_reads_the_audience_but_cannot_change_it(workspace, member_client):
    news = ContactListFactory(workspace=workspace)
    campaign = _campaign(workspace, include_lists=[news])
    client = member_client(workspace, Role.VIEWER)
    content = client.get(_url(workspace, campaign)).content.decode()
    assert re.search(rf'name="include_lists" value="{news.pk}"[^>]*checked[^>]*disabled', content)
    assert "Save audience" not in content
    assert 'hx-trigger="change"' not in content
    response = client.post(_url(workspace, campaign), {"include_lists": []})
    assert response.status_code == 403
    assert list(campaign.include_lists.all()) == [news]


def test_a_sent_campaign_shows_its_audience_read_only(workspace, member_client):
    news = ContactListFactory(workspace=workspace)
    campaign = _campaign(workspace, include_lists=[news])
    Campaign.objects.filter(pk=campaign.pk).update(status="sent")
    client = member_client(workspace, Role.EDITOR)
    content = client.get(_url(workspace, campaign)).content.decode()
    assert "can no longer change" in content
    assert "Save audience" not in content
    response = client.post(_url(workspace, campaign), {"include_lists": []})
    assert response.status_code == 400
    assert "Only draft campaigns" in response.content.decode()
    assert list(campaign.include_lists.all()) == [news]


def test_audience_of_another_workspace_campaign_is_404(workspace, member_client):
    foreign = _campaign(WorkspaceFactory())
    client = member_client(workspace, Role.OWNER)
    url = reverse(
        "campaigns:campaign_audience",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": foreign.pk},
    )
    assert client.get(url).status_code == 404
    assert client.post(url, {}, headers={"HX-Request": "true"}).status_code == 404
