import pytest
from django.db import IntegrityError

from campaigns import services
from campaigns.models import Campaign, Template
from campaigns.personalise import compose
from campaigns.starters import STARTERS, starter_get
from compliance.footer import footer_problems
from tests.factories import WorkspaceFactory


@pytest.mark.django_db
def test_status_outside_the_states_is_refused_by_the_database(workspace):
    campaign = services.campaign_create(
        workspace=workspace, name="Spring", starter=None, acting_user=None
    )
    with pytest.raises(IntegrityError):
        Campaign.objects.filter(pk=campaign.pk).update(status="archived")


@pytest.mark.django_db
def test_create_copies_the_starter_once_per_workspace(workspace):
    first = services.campaign_create(
        workspace=workspace, name="One", starter=STARTERS[0], acting_user=None
    )
    second = services.campaign_create(
        workspace=workspace, name="Two", starter=STARTERS[0], acting_user=None
    )
    assert first.template == second.template
    assert first.template.is_starter
    assert first.status == Campaign.Status.DRAFT
    assert first.html == STARTERS[0].body
    assert Template.objects.for_workspace(workspace).count() == 1
    other = services.campaign_create(
        workspace=WorkspaceFactory(), name="One", starter=STARTERS[0], acting_user=None
    )
    assert other.template != first.template


@pytest.mark.parametrize("starter", STARTERS, ids=lambda s: s.key)
def test_every_starter_has_a_content_slot_and_the_footer(starter):
    assert "{{ content }}" in starter.html
    assert "{{ postal_address }}" in starter.html
    assert "{{ unsubscribe_url }}" in starter.html
    assert "prefers-color-scheme: dark" in starter.html
    assert 'name="viewport"' in starter.html


@pytest.mark.parametrize("starter", STARTERS, ids=lambda s: s.key)
def test_every_starter_passes_the_footer_policy(starter):
    workspace = WorkspaceFactory.build(postal_address="1 Main St, Springfield")
    html = compose(layout=starter.html, body=starter.body)
    assert footer_problems(workspace=workspace, html=html) == []


def test_starter_get_by_key():
    assert starter_get("plain").name == "Plain"
    assert starter_get("nope") is None


def test_compose_puts_the_body_in_the_slot():
    assert compose(layout="<div>{{content}}</div>", body="<p>x</p>") == "<div><p>x</p></div>"
    assert compose(layout=None, body="<p>x</p>") == "<p>x</p>"


@pytest.mark.django_db
def test_only_drafts_can_be_updated(workspace):
    from accounts.errors import ApplicationError

    campaign = services.campaign_create(
        workspace=workspace, name="Sent", starter=None, acting_user=None
    )
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENT)
    campaign.refresh_from_db()
    with pytest.raises(ApplicationError):
        services.campaign_update(campaign=campaign, acting_user=None, subject="Later")


@pytest.mark.django_db
@pytest.mark.parametrize("starter", STARTERS, ids=lambda s: s.key)
def test_every_starter_renders_through_the_renderer(starter):
    from campaigns.preview import campaign_preview

    workspace = WorkspaceFactory(postal_address="1 Main St, Springfield")
    result = campaign_preview(
        workspace=workspace,
        subject="Hi",
        preheader="Inside",
        html=starter.body,
        text="",
        layout=starter.html,
        contact=None,
    )
    assert result.errors == []
    assert "Alex" in result.rendered.html
    assert "1 Main St, Springfield" in result.rendered.html
    assert "@media" in result.rendered.html  # responsive and dark-mode rules survive inlining
    assert "Alex" in result.rendered.text
