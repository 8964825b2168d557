"""Isolation cases of the campaign report (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from campaigns.models import Campaign


def _campaign(ws) -> dict:
    campaign = Campaign.objects.create(workspace=ws, name="Isolation", status="sent")
    return {"campaign_id": campaign.pk}


CASES = {
    "tracking:campaign_report": (_campaign, "get", None, False, Role.VIEWER),
}
