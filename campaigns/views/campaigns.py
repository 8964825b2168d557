"""The campaign list and its actions: create, duplicate, archive."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import selectors, services
from campaigns.forms import CampaignCreateForm
from campaigns.starters import STARTERS, starter_get


def _list_filters(data) -> tuple[str, str]:
    state = data.get("state", "all")
    return (state if state in selectors.CAMPAIGN_FILTERS else "all"), data.get("tag", "")[:100]


def _list_query(state: str, tag: str) -> str:
    pairs = (("state", "" if state == "all" else state), ("tag", tag))
    query = urlencode({key: value for key, value in pairs if value})
    return f"?{query}" if query else ""


@workspace_view()
@require_GET
def campaign_list(request: WorkspaceRequest) -> HttpResponse:
    """Campaigns by filter tab (archived ones only under Archived), optionally by tag."""
    state, tag = _list_filters(request.GET)
    counts = selectors.campaign_filter_counts(workspace=request.workspace, tag=tag)
    paginator = Paginator(
        selectors.campaign_index(workspace=request.workspace, state=state, tag=tag),
        selectors.CAMPAIGN_PAGE_SIZE,
    )
    paginator.count = counts[state]  # already counted with the tabs: no second COUNT query
    page = paginator.get_page(request.GET.get("page"))
    tabs = [
        {"key": key, "label": label, "count": counts[key], "query": _list_query(key, tag)}
        for key, (label, _) in selectors.CAMPAIGN_FILTERS.items()
    ]
    return render(
        request,
        "campaigns/campaign_list.html",
        {
            "campaigns": page.object_list,
            "page": page,
            "tabs": tabs,
            "state": state,
            "tag": tag,
            "tags": selectors.campaign_tags(workspace=request.workspace),
            "has_any": counts["all"] + counts["archived"] > 0,
            "can_edit": request.membership.has_role(Role.EDITOR),
            "archivable": services.ARCHIVABLE_STATUSES,
        },
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


@workspace_view(Role.EDITOR)
@require_POST
def campaign_duplicate(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    copy = services.campaign_duplicate(campaign=campaign, acting_user=request.user)
    messages.success(request, f"Duplicated as “{copy.name}”, a draft.")
    return redirect(
        "campaigns:campaign_edit", workspace_slug=request.workspace.slug, campaign_id=copy.pk
    )


@workspace_view(Role.EDITOR)
@require_POST
def campaign_archive(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    """Archive (archived=1) or bring back (archived=0), then return to the list as it was."""
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    archived = request.POST.get("archived", "1") != "0"
    try:
        services.campaign_archive(campaign=campaign, archived=archived, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        verb = "archived" if archived else "moved back from the archive"
        messages.success(request, f"“{campaign.name}” {verb}.")
    state, tag = _list_filters(request.POST)
    url = reverse("campaigns:campaign_list", kwargs={"workspace_slug": request.workspace.slug})
    return redirect(url + _list_query(state, tag))
