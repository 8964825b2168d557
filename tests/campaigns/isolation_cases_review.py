"""Isolation cases of the "Review & send" tab (see tests/accounts/test_isolation.py)."""

from datetime import timedelta

from django.utils import timezone

from accounts.models import Role
from campaigns.scheduling import campaign_schedule
from tests.campaigns.test_checks import ready_campaign


def _ready(ws) -> dict:
    """A campaign that passes every check, so that the member's POST succeeds."""
    return {"campaign_id": ready_campaign(ws).pk}


def _scheduled(ws) -> dict:
    campaign = ready_campaign(ws)
    send_at = timezone.now() + timedelta(days=1)
    campaign_schedule(campaign=campaign, send_at=send_at, acting_user=None)
    return {"campaign_id": campaign.pk}


CASES = {
    "campaigns:campaign_review": (_ready, "get", None, False, Role.VIEWER),
    "campaigns:campaign_test_send": (
        _ready,
        "post",
        {"addresses": "isolation@example.net", "contact": ""},
        False,
        Role.EDITOR,
    ),
    "campaigns:campaign_schedule": (_ready, "post", {"when": "now"}, False, Role.EDITOR),
    "campaigns:campaign_unschedule": (_scheduled, "post", None, False, Role.EDITOR),
    "campaigns:campaign_cancel": (_scheduled, "post", None, False, Role.EDITOR),
}
