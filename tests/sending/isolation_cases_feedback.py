"""Isolation cases of a delivery's detail page (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from campaigns.models import Campaign
from sending.models import Delivery


def _delivery(ws) -> dict:
    campaign = Campaign.objects.create(workspace=ws, name="Isolation", status="sent")
    delivery = Delivery.objects.create(
        workspace=ws, campaign=campaign, address="someone@example.net", state="bounced"
    )
    return {"campaign_id": campaign.pk, "delivery_id": delivery.pk}


CASES = {
    "sending:delivery_detail": (_delivery, "get", None, False, Role.VIEWER),
}
