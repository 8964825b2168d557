"""Isolation cases of a campaign's send pages (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from campaigns.models import Campaign
from sending.models import CampaignSend, Delivery


def _sending(ws, status=Campaign.Status.SENDING) -> dict:
    campaign = Campaign.objects.create(workspace=ws, name="Isolation", status=status)
    CampaignSend.objects.create(
        workspace=ws, campaign=campaign, is_paused=status == Campaign.Status.PAUSED
    )
    Delivery.objects.create(
        workspace=ws, campaign=campaign, address="someone@example.net", state="unknown"
    )
    return {"campaign_id": campaign.pk}


def _paused(ws) -> dict:
    return _sending(ws, Campaign.Status.PAUSED)


CASES = {
    "sending:campaign_progress": (_sending, "get", None, True, Role.VIEWER),
    "sending:campaign_deliveries": (_sending, "get", None, False, Role.VIEWER),
    "sending:campaign_pause": (_sending, "post", None, False, Role.EDITOR),
    "sending:campaign_resume": (_paused, "post", None, False, Role.EDITOR),
    "sending:campaign_stop": (_sending, "post", None, False, Role.EDITOR),
}
