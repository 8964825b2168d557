from csp.decorators import csp_update
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import preview, selectors, services
from campaigns.forms import CampaignContentForm
from campaigns.models import Campaign
from contacts import selectors as contact_selectors
from contacts.models import Contact


def _preview_contact(request: WorkspaceRequest, raw: str | None) -> Contact | None:
    if not raw or not raw.isdigit():
        return None
    return contact_selectors.contact_get(workspace=request.workspace, contact_id=int(raw))


def _preview_of(request: WorkspaceRequest, campaign: Campaign, values: dict) -> preview.Preview:
    return preview.campaign_preview(
        workspace=request.workspace,
        subject=values.get("subject", ""),
        preheader=values.get("preheader", ""),
        html=values.get("html", ""),
        text=values.get("text", ""),
        layout=campaign.template.html if campaign.template else None,
        contact=_preview_contact(request, values.get("preview_contact")),
    )


def _saved_values(campaign: Campaign) -> dict:
    return {name: getattr(campaign, name) for name in services.EDITABLE_FIELDS}


# The preview's srcdoc iframe inherits this page's CSP: emails need inline styles and
# remote images; scripts stay forbidden (and the iframe's sandbox blocks them too).
_PREVIEW_CSP = {"style-src": ["'unsafe-inline'"], "img-src": ["https:"]}


@csp_update(_PREVIEW_CSP)
@workspace_view()
@require_http_methods(["GET", "POST"])
def campaign_edit(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    can_edit = request.membership.has_role(Role.EDITOR) and campaign.is_editable
    form = CampaignContentForm(request.POST or None, instance=campaign)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.campaign_update(
                    campaign=campaign, acting_user=request.user, **form.cleaned_data
                )
            except ApplicationError as error:
                messages.error(request, error.message)
            else:
                messages.success(request, "Campaign saved.")
                return redirect(
                    "campaigns:campaign_edit",
                    workspace_slug=request.workspace.slug,
                    campaign_id=campaign.pk,
                )
        status = 400
    if not can_edit:
        for field in form.fields.values():
            field.disabled = True
    values = request.POST if request.method == "POST" else _saved_values(campaign)
    return render(
        request,
        "campaigns/campaign_edit.html",
        {
            "campaign": campaign,
            "form": form,
            "can_edit": can_edit,
            "preview": _preview_of(request, campaign, values),
            "contacts": selectors.preview_contact_choices(workspace=request.workspace),
        },
        status=status,
    )


@workspace_view()
@require_http_methods(["GET", "POST"])
def campaign_preview(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    """The preview panel: of the editor's unsaved form (POST) or of the saved campaign (GET)."""
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    if request.method == "POST":
        values = request.POST
    else:
        values = {**_saved_values(campaign), "preview_contact": request.GET.get("preview_contact")}
    return render(
        request,
        "campaigns/campaign_edit.html#preview",
        {
            "campaign": campaign,
            "preview": _preview_of(request, campaign, values),
            "preview_contact": values.get("preview_contact") or "",
        },
    )
