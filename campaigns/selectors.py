"""Reads of the campaigns app; views go through these."""

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Workspace
from campaigns.models import Campaign, Template
from contacts.models import Contact

PREVIEW_CONTACT_LIMIT = 50


def campaign_list(*, workspace: Workspace) -> QuerySet[Campaign]:
    return Campaign.objects.for_workspace(workspace).order_by("-updated_at", "-pk")


def campaign_get(*, workspace: Workspace, campaign_id: int) -> Campaign:
    campaign = (
        Campaign.objects.for_workspace(workspace)
        .select_related("template")
        .filter(pk=campaign_id)
        .first()
    )
    if campaign is None:
        raise Http404("No such campaign.")
    return campaign


def template_list(*, workspace: Workspace) -> QuerySet[Template]:
    return Template.objects.for_workspace(workspace)


def preview_contact_choices(*, workspace: Workspace) -> QuerySet[Contact]:
    """Contacts offered in the preview's picker: the first few by address."""
    return Contact.objects.for_workspace(workspace).order_by("email")[:PREVIEW_CONTACT_LIMIT]
