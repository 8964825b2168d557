"""Isolation cases of the campaign pages (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from campaigns import services
from campaigns.starters import STARTERS


def _campaign(ws) -> dict:
    campaign = services.campaign_create(
        workspace=ws, name="Isolation", starter=STARTERS[0], acting_user=None
    )
    return {"campaign_id": campaign.pk}


CASES = {
    "campaigns:campaign_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "campaigns:campaign_create": (lambda ws: {}, "get", None, False, Role.EDITOR),
    "campaigns:campaign_edit": (_campaign, "get", None, False, Role.VIEWER),
    "campaigns:campaign_preview": (_campaign, "get", None, True, Role.VIEWER),
}
