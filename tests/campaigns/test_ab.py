"""The A/B test design: the service that stores it, its plan in words, and its tab."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from campaigns import services
from campaigns.ab import ab_plan_summary, ab_split, ab_test_save, wait_words
from campaigns.models import AbTest, Campaign, Variant
from campaigns.starters import STARTERS
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

TWO = [{"subject": "Spring is here", "html": ""}, {"subject": "20% off today", "html": ""}]


def _campaign(workspace, subject: str = "Our spring sale") -> Campaign:
    campaign = services.campaign_create(
        workspace=workspace, name="Spring sale", starter=STARTERS[0], acting_user=None
    )
    return services.campaign_update(campaign=campaign, acting_user=None, subject=subject)


def _save(campaign, **overrides) -> AbTest | None:
    design = {
        "enabled": True,
        "test_share_percent": 20,
        "metric": "opens",
        "wait_minutes": 240,
        "variants": TWO,
        **overrides,
    }
    return ab_test_save(campaign=campaign, **design)


def _url(workspace, campaign) -> str:
    return reverse(
        "campaigns:campaign_ab",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": campaign.pk},
    )


def _form(**overrides) -> dict:
    return {
        "enabled": "on",
        "test_share_percent": "20",
        "metric": "opens",
        "wait_hours": "4",
        "subject_1": "Spring is here",
        "subject_2": "20% off today",
        **overrides,
    }


# The service -------------------------------------------------------------------------------


def test_save_stores_the_design_and_labels_the_variants_in_order(workspace, user):
    campaign = _campaign(workspace)
    variants = [*TWO, {"subject": "Hi {{ first_name }}", "html": "<p>Own body</p>"}]
    ab_test = _save(campaign, variants=variants, metric="clicks", acting_user=user)
    assert (ab_test.test_share_percent, ab_test.metric, ab_test.wait_minutes) == (20, "clicks", 240)
    assert ab_test.workspace == workspace
    stored = [(v.label, v.subject, v.html) for v in campaign.variants.order_by("label")]
    assert stored == [
        ("A", "Spring is here", ""),
        ("B", "20% off today", ""),
        ("C", "Hi {{ first_name }}", "<p>Own body</p>"),
    ]
    entry = AuditEntry.objects.get(verb="campaign.ab_test_saved", target_id=str(campaign.pk))
    assert entry.actor == user
    assert entry.details["variants"] == 3


def test_saving_again_replaces_the_variants(workspace):
    campaign = _campaign(workspace)
    _save(campaign, variants=[*TWO, {"subject": "Third", "html": ""}])
    ab_test = _save(campaign, variants=[{"subject": "One"}, {"subject": "Two"}], wait_minutes=60)
    assert AbTest.objects.filter(campaign=campaign).count() == 1
    assert ab_test.wait_minutes == 60
    assert list(campaign.variants.values_list("label", "subject")) == [("A", "One"), ("B", "Two")]


def test_disabling_removes_the_design_and_its_variants(workspace, user):
    campaign = _campaign(workspace)
    _save(campaign)
    assert _save(campaign, enabled=False, variants=[], acting_user=user) is None
    assert not AbTest.objects.filter(campaign=campaign).exists()
    assert not Variant.objects.filter(campaign=campaign).exists()
    assert AuditEntry.objects.filter(verb="campaign.ab_test_removed", actor=user).exists()


@pytest.mark.parametrize("count", [0, 1, 6])
def test_an_ab_test_needs_two_to_five_variants(workspace, count):
    campaign = _campaign(workspace)
    variants = [{"subject": f"Subject {n}", "html": ""} for n in range(count)]
    with pytest.raises(ApplicationError, match="2 to 5 variants"):
        _save(campaign, variants=variants)
    assert not AbTest.objects.exists()


def test_five_variants_are_labelled_a_to_e(workspace):
    campaign = _campaign(workspace)
    _save(campaign, variants=[{"subject": f"Subject {n}"} for n in range(5)])
    assert "".join(campaign.variants.values_list("label", flat=True)) == "ABCDE"


@pytest.mark.parametrize(
    ("variant", "key", "message"),
    [
        ({"subject": "  ", "html": ""}, "variants.1.subject", "Variant B: a subject is required."),
        (
            {"subject": "Hi\r\nBcc: victim@example.com", "html": ""},
            "variants.1.subject",
            "one line",
        ),
        ({"subject": "{{ first_name|nosuchfilter }}"}, "variants.1.subject", "Variant B subject"),
        ({"subject": "x" * 301}, "variants.1.subject", "longer than 300"),
        ({"subject": "Fine", "html": "<p>{% if %}</p>"}, "variants.1.html", "Variant B HTML"),
    ],
)
def test_a_bad_variant_is_refused_and_named(workspace, variant, key, message):
    campaign = _campaign(workspace)
    with pytest.raises(ApplicationError) as raised:
        _save(campaign, variants=[TWO[0], variant])
    assert message in raised.value.extra["errors"][key]
    assert not AbTest.objects.exists()
    assert not Variant.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("test_share_percent", 0, "test_share_percent"),
        ("test_share_percent", 51, "test_share_percent"),
        ("wait_minutes", 29, "wait_minutes"),
        ("wait_minutes", 7 * 24 * 60 + 1, "wait_minutes"),
        ("metric", "bounces", "metric"),
    ],
)
def test_design_out_of_range_is_refused(workspace, field, value, key):
    with pytest.raises(ApplicationError) as raised:
        _save(_campaign(workspace), **{field: value})
    assert key in raised.value.extra["errors"]


@pytest.mark.parametrize(
    ("share", "wait"), [(1, 30), (50, 7 * 24 * 60)], ids=["smallest", "largest"]
)
def test_design_at_the_limits_is_fine(workspace, share, wait):
    ab_test = _save(_campaign(workspace), test_share_percent=share, wait_minutes=wait)
    assert (ab_test.test_share_percent, ab_test.wait_minutes) == (share, wait)


@pytest.mark.parametrize("status", ["scheduled", "sending", "paused", "sent", "cancelled"])
def test_only_a_draft_changes_its_ab_test(workspace, status):
    campaign = _campaign(workspace)
    _save(campaign)
    Campaign.objects.filter(pk=campaign.pk).update(status=status)
    with pytest.raises(ApplicationError, match="Only draft campaigns"):
        _save(campaign, enabled=False)
    assert AbTest.objects.filter(campaign=campaign).exists()


# The plan in words -------------------------------------------------------------------------


def test_plan_summary_in_words(workspace):
    ab_test = _save(_campaign(workspace))
    assert ab_plan_summary(ab_test) == (
        "20% of the audience gets one of 2 subjects (10% each); after 4 hours the subject "
        "with more unique opens goes to the remaining 80%."
    )


def test_plan_summary_with_the_audience_size(workspace):
    ab_test = _save(_campaign(workspace))
    assert ab_plan_summary(ab_test, audience_size=1000) == (
        "20% of the audience (200 of 1,000 contacts) gets one of 2 subjects (100 each); "
        "after 4 hours the subject with more unique opens goes to the remaining 80% "
        "(800 contacts)."
    )


def test_plan_summary_of_versions_by_clicks_with_an_uneven_split(workspace):
    variants = [*TWO, {"subject": "Third", "html": "<p>Other body</p>"}]
    ab_test = _save(_campaign(workspace), variants=variants, metric="clicks", wait_minutes=90)
    assert ab_plan_summary(ab_test) == (
        "20% of the audience gets one of 3 versions (6.7% each); after 1 hour 30 minutes "
        "the version with more unique clicks goes to the remaining 80%."
    )
    assert "(20 of 100 contacts) gets one of 3 versions (6 to 7 each)" in ab_plan_summary(
        ab_test, audience_size=100
    )


def test_split_spreads_the_test_share_evenly_and_keeps_everyone():
    split = ab_split(audience_size=1003, test_share_percent=25, variant_count=3)
    assert split.test_total == 250
    assert split.per_variant == (84, 83, 83)
    assert split.remainder == 753
    assert sum(split.per_variant) + split.remainder == 1003


@pytest.mark.parametrize(
    ("minutes", "words"),
    [
        (30, "30 minutes"),
        (60, "1 hour"),
        (90, "1 hour 30 minutes"),
        (240, "4 hours"),
        (1440, "1 day"),
        (10080, "7 days"),
        (1500, "25 hours"),
    ],
)
def test_wait_in_words(minutes, words):
    assert wait_words(minutes) == words


# The tab -----------------------------------------------------------------------------------


def test_tab_offers_the_design_with_the_campaign_subject_as_variant_a(workspace, member_client):
    campaign = _campaign(workspace, subject="Our spring sale")
    response = member_client(workspace, Role.EDITOR).get(_url(workspace, campaign))
    content = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'name="subject_1"[^>]*value="Our spring sale"', content)
    assert 'name="subject_5"' in content
    assert 'name="enabled"' in content
    assert "checked" not in re.search(r'<input[^>]*name="enabled"[^>]*>', content).group(0)
    assert "Save A/B design" in content
    assert "The plan" not in content


def test_post_saves_the_design_and_shows_the_plan(workspace, member_client):
    campaign = _campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(_url(workspace, campaign), _form(wait_hours="2.5", metric="clicks"))
    assert response.status_code == 302
    ab_test = AbTest.objects.get(campaign=campaign)
    assert (ab_test.test_share_percent, ab_test.metric, ab_test.wait_minutes) == (20, "clicks", 150)
    assert list(campaign.variants.values_list("label", "subject")) == [
        ("A", "Spring is here"),
        ("B", "20% off today"),
    ]
    page = client.get(_url(workspace, campaign)).content.decode()
    assert "A/B design saved." in page
    assert "20% of the audience gets one of 2 subjects (10% each); after 2 hours 30 minutes" in (
        page
    )
    assert re.search(r'<input[^>]*name="enabled"[^>]*checked', page)
    assert re.search(r'name="wait_hours"[^>]*value="2.5"', page)


def test_plan_on_the_tab_counts_the_sendable_audience(workspace, member_client):
    news = ContactListFactory(workspace=workspace)
    for _ in range(10):
        SubscriptionFactory(contact=ContactFactory(workspace=workspace), contact_list=news)
    campaign = _campaign(workspace)
    services.campaign_audience_update(
        campaign=campaign,
        include_lists=[news],
        include_segments=[],
        exclude_lists=[],
        exclude_segments=[],
        tags=[],
        acting_user=None,
    )
    _save(campaign, test_share_percent=50)
    page = member_client(workspace, Role.VIEWER).get(_url(workspace, campaign)).content.decode()
    assert "(5 of 10 contacts) gets one of 2 subjects (2 to 3 each)" in page


def test_empty_rows_are_skipped_and_labels_follow_the_filled_ones(workspace, member_client):
    campaign = _campaign(workspace)
    form = _form(subject_2="", subject_3="Third row", html_3="<p>Own</p>", subject_5="Fifth")
    response = member_client(workspace, Role.EDITOR).post(_url(workspace, campaign), form)
    assert response.status_code == 302
    assert list(campaign.variants.values_list("label", "subject", "html")) == [
        ("A", "Spring is here", ""),
        ("B", "Third row", "<p>Own</p>"),
        ("C", "Fifth", ""),
    ]


def test_a_template_error_is_shown_at_its_variant_and_nothing_is_lost(workspace, member_client):
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign),
        _form(subject_2="Hi {{ first_name|nosuchfilter }}", html_2="<p>kept body</p>"),
    )
    content = response.content.decode()
    assert response.status_code == 400
    assert "Fix the A/B design below." in content
    assert "Variant B subject:" in content
    assert "nosuchfilter" in content
    assert re.search(r'name="subject_1"[^>]*value="Spring is here"', content)
    assert "&lt;p&gt;kept body&lt;/p&gt;</textarea>" in content
    assert not AbTest.objects.exists()


def test_a_single_variant_is_refused_with_a_clear_error(workspace, member_client):
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign), _form(subject_2="")
    )
    assert response.status_code == 400
    assert "An A/B test needs 2 to 5 variants." in response.content.decode()


@pytest.mark.parametrize(
    ("field", "value"), [("test_share_percent", "60"), ("wait_hours", "0.25"), ("wait_hours", "x")]
)
def test_out_of_range_numbers_are_refused_by_the_form(workspace, member_client, field, value):
    campaign = _campaign(workspace)
    response = member_client(workspace, Role.EDITOR).post(
        _url(workspace, campaign), _form(**{field: value})
    )
    assert response.status_code == 400
    assert not AbTest.objects.exists()


def test_turning_the_toggle_off_removes_the_test_even_with_junk_fields(workspace, member_client):
    campaign = _campaign(workspace)
    _save(campaign)
    form = _form(test_share_percent="junk")
    del form["enabled"]
    response = member_client(workspace, Role.EDITOR).post(_url(workspace, campaign), form)
    assert response.status_code == 302
    assert not AbTest.objects.filter(campaign=campaign).exists()
    assert not campaign.variants.exists()


def test_viewer_reads_the_design_but_cannot_change_it(workspace, member_client):
    campaign = _campaign(workspace)
    _save(campaign)
    client = member_client(workspace, Role.VIEWER)
    content = client.get(_url(workspace, campaign)).content.decode()
    assert re.search(r'name="subject_1"[^>]*value="Spring is here"[^>]*disabled', content)
    assert "Save A/B design" not in content
    response = client.post(_url(workspace, campaign), _form(subject_1="Changed"))
    assert response.status_code == 403
    assert campaign.variants.get(label="A").subject == "Spring is here"


def test_a_sent_campaign_shows_its_design_read_only(workspace, member_client):
    campaign = _campaign(workspace)
    _save(campaign)
    Campaign.objects.filter(pk=campaign.pk).update(status="sent")
    client = member_client(workspace, Role.EDITOR)
    content = client.get(_url(workspace, campaign)).content.decode()
    assert "can no longer change" in content
    assert "Save A/B design" not in content
    response = client.post(_url(workspace, campaign), _form(subject_1="Changed"))
    assert response.status_code == 400
    assert "Only draft campaigns" in response.content.decode()
    assert campaign.variants.get(label="A").subject == "Spring is here"


def test_the_winner_shows_once_tracking_picks_it(workspace, member_client):
    campaign = _campaign(workspace)
    ab_test = _save(campaign)
    winner = campaign.variants.get(label="B")
    Campaign.objects.filter(pk=campaign.pk).update(status="sent")
    AbTest.objects.filter(pk=ab_test.pk).update(winner=winner, decided_at=timezone.now())
    content = member_client(workspace, Role.VIEWER).get(_url(workspace, campaign)).content.decode()
    assert "Variant B won" in content
    assert "20% off today" in content
    assert "Winner</span>" in content


def test_ab_tab_of_another_workspace_campaign_is_404(workspace, member_client):
    foreign = _campaign(WorkspaceFactory())
    client = member_client(workspace, Role.OWNER)
    assert client.get(_url(workspace, foreign)).status_code == 404
    assert client.post(_url(workspace, foreign), _form()).status_code == 404
    assert not AbTest.objects.exists()


@pytest.mark.parametrize(("minutes", "shown"), [(6000, "100"), (100, "1.67"), (30, "0.5")])
def test_saved_wait_shows_in_plain_hours(workspace, member_client, minutes, shown):
    campaign = _campaign(workspace)
    _save(campaign, wait_minutes=minutes)
    page = member_client(workspace, Role.EDITOR).get(_url(workspace, campaign)).content.decode()
    assert re.search(rf'name="wait_hours"[^>]*value="{shown}"', page)


def test_plan_warns_when_the_audience_is_too_small_for_the_test(workspace):
    ab_test = _save(_campaign(workspace))
    summary = ab_plan_summary(ab_test, audience_size=5)
    assert "(1 of 5 contacts) gets one of 2 subjects (0 to 1 each)" in summary
    assert "Some variants would reach nobody" in summary
    assert "nobody" not in ab_plan_summary(ab_test, audience_size=10)
