"""The audience tab: lists and segments in and out, tags, and the live audience count."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import selectors, services
from campaigns.audience import audience_count
from campaigns.forms import CampaignAudienceForm
from campaigns.models import Campaign
from contacts import selectors as contact_selectors

TEMPLATE = "campaigns/campaign_audience.html"
_CHOICE_FIELDS = ("include_lists", "include_segments", "exclude_lists", "exclude_segments")


def _count_panel(
    request: WorkspaceRequest, campaign: Campaign, *, error: str = "", saved: bool = False
) -> HttpResponse:
    return render(
        request,
        f"{TEMPLATE}#audience-count",
        {
            "campaign": campaign,
            "count": audience_count(campaign=campaign),
            "error": error,
            "saved": saved,
        },
    )


def _posted_ids(request: WorkspaceRequest) -> dict[str, set[int]]:
    """What the marketer ticked, kept as sent when the save is refused."""
    return {
        name: {int(raw) for raw in request.POST.getlist(name) if raw.isdigit()}
        for name in _CHOICE_FIELDS
    }


@workspace_view()
@require_http_methods(["GET", "POST"])
def campaign_audience(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    """The tab (GET), its count panel (htmx GET) and saves (POST; htmx saves on every change
    and answers with the count of the saved audience)."""
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    if request.method == "GET" and request.htmx:
        return _count_panel(request, campaign)
    can_edit = request.membership.has_role(Role.EDITOR) and campaign.is_editable
    form = CampaignAudienceForm(
        request.POST if request.method == "POST" else None,
        lists=contact_selectors.list_choices(workspace=request.workspace),
        segments=contact_selectors.segment_list(workspace=request.workspace),
    )
    status = 200
    if request.method == "POST":
        error = ""
        if form.is_valid():
            try:
                services.campaign_audience_update(
                    campaign=campaign, acting_user=request.user, **form.cleaned_data
                )
            except ApplicationError as problem:
                error = problem.message
            else:
                if request.htmx:
                    return _count_panel(request, campaign, saved=True)
                messages.success(request, "Audience saved.")
                return redirect(
                    "campaigns:campaign_audience",
                    workspace_slug=request.workspace.slug,
                    campaign_id=campaign.pk,
                )
        else:
            error = " ".join(message for errors in form.errors.values() for message in errors)
        if request.htmx:
            return _count_panel(request, campaign, error=error)
        messages.error(request, error)
        status = 400
        selected = _posted_ids(request)
        tags = request.POST.get("tags", "")
    else:
        selected = selectors.campaign_audience_selected(campaign=campaign)
        tags = ", ".join(campaign.tags or [])
    choices = selectors.campaign_audience_choices(workspace=request.workspace)
    return render(
        request,
        TEMPLATE,
        {
            "campaign": campaign,
            "can_edit": can_edit,
            "lists": choices["lists"],
            "segments": choices["segments"],
            "selected": selected,
            "tags": tags,
            "tags_help": form.fields["tags"].help_text,
            "count": None,
        },
        status=status,
    )
