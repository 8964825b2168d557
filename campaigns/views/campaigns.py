"""The campaign list and its actions: create, duplicate, archive."""

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import selectors, services
from campaigns.forms import CampaignCreateForm
from campaigns.starters import STARTERS, starter_get


@workspace_view()
@require_GET
def campaign_list(request: WorkspaceRequest) -> HttpResponse:
    campaigns = selectors.campaign_list(workspace=request.workspace)
    return render(
        request,
        "campaigns/campaign_list.html",
        {"campaigns": campaigns, "can_edit": request.membership.has_role(Role.EDITOR)},
    )


@workspace_view(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def campaign_create(request: WorkspaceRequest) -> HttpResponse:
    form = CampaignCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        campaign = services.campaign_create(
            workspace=request.workspace,
            name=form.cleaned_data["name"],
            starter=starter_get(form.cleaned_data["starter"]),
            acting_user=request.user,
        )
        return redirect(
            "campaigns:campaign_edit",
            workspace_slug=request.workspace.slug,
            campaign_id=campaign.pk,
        )
    return render(request, "campaigns/campaign_create.html", {"form": form, "starters": STARTERS})


def campaign_duplicate(request, *args, **kwargs):
    raise Http404("Not built yet.")


def campaign_archive(request, *args, **kwargs):
    raise Http404("Not built yet.")
