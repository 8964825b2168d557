"""A campaign's send pages: the progress panel on the Review & send tab, the controls and
the deliveries list."""

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry, Role
from campaigns.models import Campaign
from sending.models import CampaignSend, Delivery
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def _url(name, workspace, campaign, app="sending"):
    return reverse(
        f"{app}:{name}", kwargs={"workspace_slug": workspace.slug, "campaign_id": campaign.pk}
    )


@pytest.fixture
def sending_campaign(workspace):
    campaign = Campaign.objects.create(
        workspace=workspace, name="Launch", status=Campaign.Status.SENDING
    )
    CampaignSend.objects.create(
        workspace=workspace, campaign=campaign, audience_total=8, excluded_suppressed=1
    )
    states = ["sent"] * 4 + ["queued", "deferred", "unknown"]
    Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=campaign,
            address=f"p{i}@example.net",
            state=state,
            last_response="connection lost after DATA" if state == "unknown" else "",
        )
        for i, state in enumerate(states)
    )
    return campaign


def test_review_tab_of_a_sending_campaign_loads_the_progress_panel(
    workspace, member_client, sending_campaign
):
    client = member_client(workspace, Role.VIEWER)
    page = client.get(_url("campaign_review", workspace, sending_campaign, app="campaigns"))
    assert _url("campaign_progress", workspace, sending_campaign).encode() in page.content

    panel = client.get(
        _url("campaign_progress", workspace, sending_campaign), HTTP_HX_REQUEST="true"
    )
    assert panel.status_code == 200
    content = panel.content.decode()
    assert 'data-fact="sent">4<' in content
    assert 'data-fact="unknown">1<' in content
    assert 'max="7" value="5"' in content  # sent and unknown are done; queued, deferred wait
    assert 'hx-trigger="every 2s"' in content  # polls while sending
    assert "Pause" not in content  # viewers get no controls


def test_editor_pauses_resumes_and_stops(workspace, member_client, sending_campaign, settings):
    client = member_client(workspace, Role.EDITOR)
    client.post(_url("campaign_pause", workspace, sending_campaign))
    sending_campaign.refresh_from_db()
    assert sending_campaign.status == Campaign.Status.PAUSED
    assert sending_campaign.send.is_paused

    panel = client.get(_url("campaign_progress", workspace, sending_campaign)).content.decode()
    assert "Resume" in panel
    assert "every 2s" not in panel

    client.post(_url("campaign_resume", workspace, sending_campaign))
    sending_campaign.refresh_from_db()
    assert sending_campaign.status == Campaign.Status.SENDING

    client.post(_url("campaign_stop", workspace, sending_campaign))
    sending_campaign.refresh_from_db()
    assert sending_campaign.status == Campaign.Status.CANCELLED
    assert set(
        Delivery.objects.filter(campaign=sending_campaign).values_list("state", flat=True)
    ) == {"sent", "skipped", "unknown"}
    verbs = set(AuditEntry.objects.values_list("verb", flat=True))
    assert {"campaign.paused", "campaign.resumed", "campaign.stopped"} <= verbs


def test_a_viewer_cannot_pause(workspace, member_client, sending_campaign):
    response = member_client(workspace, Role.VIEWER).post(
        _url("campaign_pause", workspace, sending_campaign)
    )
    assert response.status_code == 403
    sending_campaign.refresh_from_db()
    assert sending_campaign.status == Campaign.Status.SENDING


def test_deliveries_page_lists_unknown_outcomes_with_their_reason(
    workspace, member_client, sending_campaign
):
    page = member_client(workspace, Role.VIEWER).get(
        _url("campaign_deliveries", workspace, sending_campaign) + "?state=unknown"
    )
    content = page.content.decode()
    assert "p6@example.net" in content
    assert "connection lost after DATA" in content
    assert "p0@example.net" not in content


def test_deliveries_page_lists_the_complained_ones_though_they_stay_sent(
    workspace, member_client, sending_campaign
):
    Delivery.objects.filter(campaign=sending_campaign, address="p1@example.net").update(
        complained_at=timezone.now()
    )
    content = (
        member_client(workspace, Role.VIEWER)
        .get(_url("campaign_deliveries", workspace, sending_campaign) + "?state=complained")
        .content.decode()
    )
    assert "p1@example.net" in content
    assert "p0@example.net" not in content
    assert "p6@example.net" not in content


def test_another_workspaces_campaign_is_404(member_client, sending_campaign):
    other = WorkspaceFactory()
    response = member_client(other, Role.OWNER).get(
        _url("campaign_progress", other, sending_campaign)
    )
    assert response.status_code == 404


def test_operators_read_sends_and_deliveries_in_the_admin_but_cannot_change_them(
    operator_client, sending_campaign
):
    delivery = Delivery.objects.filter(campaign=sending_campaign, state="unknown").get()
    listing = operator_client.get("/admin/sending/delivery/?state__exact=unknown")
    assert listing.status_code == 200
    assert delivery.address.encode() in listing.content
    detail = operator_client.get(f"/admin/sending/delivery/{delivery.pk}/change/")
    assert detail.status_code == 200
    assert b"connection lost after DATA" in detail.content
    assert operator_client.get("/admin/sending/delivery/add/").status_code == 403
    assert operator_client.get("/admin/sending/campaignsend/").status_code == 200
