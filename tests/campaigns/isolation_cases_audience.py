"""Isolation cases of the audience and A/B tabs and the list's actions (see
tests/accounts/test_isolation.py)."""

from accounts.models import Role
from campaigns import services
from campaigns.starters import STARTERS


def _campaign(ws) -> dict:
    campaign = services.campaign_create(
        workspace=ws, name="Isolation", starter=STARTERS[0], acting_user=None
    )
    return {"campaign_id": campaign.pk}


CASES = {
    "campaigns:campaign_audience": (_campaign, "get", None, False, Role.VIEWER),
    "campaigns:campaign_ab": (_campaign, "get", None, False, Role.VIEWER),
    "campaigns:campaign_duplicate": (_campaign, "post", None, False, Role.EDITOR),
    "campaigns:campaign_archive": (_campaign, "post", {"archived": "1"}, False, Role.EDITOR),
}
