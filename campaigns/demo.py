"""A draft campaign for `manage.py seed_demo`, to open in the editor and preview."""

from accounts.models import User, Workspace
from campaigns.models import Campaign
from campaigns.services import campaign_create, campaign_update
from campaigns.starters import starter_get

DEMO_CAMPAIGN_NAME = "Spring trail report"


def campaigns_demo_seed(*, workspace: Workspace, user: User, from_email: str) -> Campaign:
    """Idempotent: one draft in the newsletter layout."""
    existing = Campaign.objects.for_workspace(workspace).filter(name=DEMO_CAMPAIGN_NAME).first()
    if existing is not None:
        return existing
    campaign = campaign_create(
        workspace=workspace,
        name=DEMO_CAMPAIGN_NAME,
        starter=starter_get("newsletter"),
        acting_user=user,
    )
    return campaign_update(
        campaign=campaign,
        acting_user=user,
        subject='{{ first_name|default:"Hello" }}, the trails are open again',
        preheader="New routes, a gear test and 15% off rain shells this week.",
        from_name="Demo Outdoor Co.",
        from_email=from_email,
        reply_to="",
        html=campaign.html,
        text="",
    )
