"""What a marketer sees of what came back: a delivery's detail page and the campaign's
bounces by class."""

import pytest
from django.urls import reverse

from accounts.models import Role
from sending import selectors
from tests.factories import WorkspaceFactory
from tests.sending.feedback.sent_campaign import BLOCK_DIAGNOSTIC, HARD_DIAGNOSTIC, sent_campaign

pytestmark = pytest.mark.django_db


def _detail(workspace, delivery) -> str:
    return reverse(
        "sending:delivery_detail",
        kwargs={
            "workspace_slug": workspace.slug,
            "campaign_id": delivery.campaign_id,
            "delivery_id": delivery.pk,
        },
    )


def test_a_viewer_reads_a_hard_bounce_with_its_attempt_and_diagnostic(workspace, member_client):
    sent = sent_campaign(workspace)
    page = member_client(workspace, Role.VIEWER).get(_detail(workspace, sent.hard))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'data-fact="address">hard@mail.test<' in content
    assert 'data-fact="state">Bounced<' in content
    assert 'data-fact="bounce_class">Hard<' in content
    # The attempt: transport, remote host, codes, answer.
    assert "relay.mail.test" in content
    assert '250 <span class="muted">2.0.0</span>' in content
    assert "Ok: queued as 4Rk1x2" in content
    # The bounce that came back: class, status, diagnostic, remote MTA, source.
    assert 'data-kind="bounce"' in content
    assert "<code>5.1.1</code>" in content
    assert "Recipient address rejected: User unknown" in content
    assert "Reported by mx.mail.test" in content
    assert ">inbound<" in content
    assert HARD_DIAGNOSTIC.split("<")[0] in content


def test_a_complaint_shows_its_feedback_type_and_an_unsubscribe_says_by_email(
    workspace, member_client
):
    sent = sent_campaign(workspace)
    client = member_client(workspace, Role.VIEWER)
    complaint = client.get(_detail(workspace, sent.complained)).content.decode()
    assert 'data-kind="complaint"' in complaint
    assert 'badge-reason-complaint">abuse<' in complaint
    assert "anymail:mailgun" in complaint
    assert 'data-fact="complained_at"' in complaint
    unsubscribe = client.get(_detail(workspace, sent.unsubscribed)).content.decode()
    assert "bye@mail.test asked by email to stop receiving mail" in unsubscribe


def test_a_delivery_without_feedback_says_so(workspace, member_client):
    sent = sent_campaign(workspace)
    content = member_client(workspace).get(_detail(workspace, sent.ok)).content.decode()
    assert "Nothing came back for this delivery" in content
    assert "Not handed to a server yet." in content


def test_the_deliveries_list_links_each_row_to_its_detail(workspace, member_client):
    sent = sent_campaign(workspace)
    url = reverse(
        "sending:campaign_deliveries",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": sent.campaign.pk},
    )
    content = member_client(workspace).get(url + "?state=bounced").content.decode()
    assert f'href="{_detail(workspace, sent.block)}"' in content
    assert BLOCK_DIAGNOSTIC in content


def test_another_workspaces_delivery_is_404(workspace, member_client):
    sent = sent_campaign(workspace)
    other = WorkspaceFactory()
    owner = member_client(other, Role.OWNER)
    # Through the other workspace's slug, and through this campaign with a foreign delivery.
    foreign = reverse(
        "sending:delivery_detail",
        kwargs={
            "workspace_slug": other.slug,
            "campaign_id": sent.campaign.pk,
            "delivery_id": sent.hard.pk,
        },
    )
    assert owner.get(foreign).status_code == 404
    own = sent_campaign(other, name="Theirs")
    mixed = reverse(
        "sending:delivery_detail",
        kwargs={
            "workspace_slug": other.slug,
            "campaign_id": own.campaign.pk,
            "delivery_id": sent.hard.pk,
        },
    )
    assert owner.get(mixed).status_code == 404
    assert owner.get(_detail(other, own.hard)).status_code == 200


def test_a_delivery_of_another_campaign_of_the_same_workspace_is_404(workspace, member_client):
    first = sent_campaign(workspace)
    second = sent_campaign(workspace, name="Second", contact=first.contact)
    url = reverse(
        "sending:delivery_detail",
        kwargs={
            "workspace_slug": workspace.slug,
            "campaign_id": second.campaign.pk,
            "delivery_id": first.hard.pk,
        },
    )
    assert member_client(workspace).get(url).status_code == 404


def test_the_progress_panel_counts_bounces_by_class_and_complaints(workspace, member_client):
    sent = sent_campaign(workspace)
    url = reverse(
        "sending:campaign_progress",
        kwargs={"workspace_slug": workspace.slug, "campaign_id": sent.campaign.pk},
    )
    content = member_client(workspace, Role.VIEWER).get(url).content.decode()
    assert 'data-fact="bounced">4<' in content  # hard, soft, block, unclassified
    assert 'data-fact="bounced_hard">1<' in content
    assert 'data-fact="bounced_soft">1<' in content
    assert 'data-fact="bounced_block">1<' in content
    assert 'data-fact="bounced_unknown">1<' in content
    assert 'data-fact="complained">1<' in content


def test_feedback_counts_follow_the_rows_in_one_query(workspace, django_assert_num_queries):
    sent = sent_campaign(workspace)
    # A soft bounce reported after the message was sent, the state left at sent.
    sent.ok.bounced_at, sent.ok.bounce_class = sent.ok.sent_at, "soft"
    sent.ok.save(update_fields=["bounced_at", "bounce_class"])
    # A class without a bounce (a deferral's) is not a bounce.
    sent.unsubscribed.bounce_class = "soft"
    sent.unsubscribed.save(update_fields=["bounce_class"])
    sent.block.complained_at = sent.complained.complained_at
    sent.block.save(update_fields=["complained_at"])
    sent_campaign(WorkspaceFactory(), name="Elsewhere")  # not counted
    with django_assert_num_queries(1):
        counts = selectors.campaign_feedback_counts(campaign=sent.campaign)
    assert counts == {"hard": 1, "soft": 2, "block": 1, "unknown": 1, "complained": 2}
