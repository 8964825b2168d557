"""Writes of the campaigns app."""

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from campaigns.models import Campaign, Template
from campaigns.starters import Starter

EDITABLE_FIELDS = ("subject", "preheader", "from_name", "from_email", "reply_to", "html", "text")


def template_from_starter(*, workspace: Workspace, starter: Starter) -> Template:
    """The workspace's copy of a built-in layout, made on first use."""
    template, _ = Template.objects.get_or_create(
        workspace=workspace,
        name=starter.name,
        is_starter=True,
        defaults={"html": starter.html},
    )
    return template


@transaction.atomic
def campaign_create(
    *, workspace: Workspace, name: str, starter: Starter | None, acting_user: User | None
) -> Campaign:
    """A draft in the chosen starter layout, with the starter's sample body."""
    template = template_from_starter(workspace=workspace, starter=starter) if starter else None
    campaign = Campaign.objects.create(
        workspace=workspace,
        name=name,
        template=template,
        html=starter.body if starter else "",
        created_by=acting_user,
    )
    audit_record(workspace=workspace, actor=acting_user, verb="campaign.created", target=campaign)
    return campaign


@transaction.atomic
def campaign_update(*, campaign: Campaign, acting_user: User | None, **fields: str) -> Campaign:
    """Save the content of a draft; campaigns that have left the draft state are read-only."""
    if not campaign.is_editable:
        raise ApplicationError("Only draft campaigns can be edited.")
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ApplicationError(f"Unknown fields: {', '.join(sorted(unknown))}.")
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.updated_at = timezone.now()
    campaign.save(update_fields=[*fields, "updated_at"])
    return campaign
