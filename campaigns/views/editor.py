"""The campaign editor: content fields, the layout picker and the live preview."""

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import library, preview, selectors, services
from campaigns.forms import CampaignContentForm, CampaignTrackingForm
from campaigns.models import Campaign
from campaigns.rendering import RenderedMessage, TemplateError, compile_template
from campaigns.rendering.engine import Mode
from contacts import selectors as contact_selectors
from contacts.models import Contact

_NOT_GIVEN = object()


def preview_csp(response: HttpResponse) -> HttpResponse:
    """Loosen this page's CSP just enough for an email in a srcdoc iframe, which inherits it.

    Emails need inline styles and remote images (and the media library's images, served
    from BASE_URL); scripts stay forbidden, and the iframe's sandbox blocks them too.
    """
    base = urlsplit(settings.BASE_URL)
    response._csp_update = {
        "style-src": ["'unsafe-inline'"],
        "img-src": ["https:", f"{base.scheme}://{base.netloc}"],
    }
    return response


def _preview_contact(request: WorkspaceRequest, raw: str | None) -> Contact | None:
    if not raw or not raw.isdigit():
        return None
    return contact_selectors.contact_get(workspace=request.workspace, contact_id=int(raw))


def _layout(request: WorkspaceRequest, campaign: Campaign, raw: Any) -> str | None:
    """The layout's HTML: the form's pick (another workspace's is a 404), else the saved one."""
    if raw is _NOT_GIVEN:
        return campaign.template.html if campaign.template else None
    raw = str(raw or "")
    if not raw.isdigit():
        return None
    return library.template_get(workspace=request.workspace, template_id=int(raw)).html


def _inbox_preheader(
    request: WorkspaceRequest, source: str, rendered: RenderedMessage, contact: Contact | None
) -> str:
    """The preheader as a mail client shows it; without one, clients show the text's start."""
    if source.strip():
        context = preview.preview_context(workspace=request.workspace, contact=contact)
        try:
            return " ".join(compile_template(source, mode=Mode.TEXT).render(context).split())
        except TemplateError:
            return ""
    return " ".join(rendered.text.split())[:140]


def _preview_of(request: WorkspaceRequest, campaign: Campaign, values: Mapping[str, Any]) -> dict:
    contact = _preview_contact(request, values.get("preview_contact"))
    result = preview.campaign_preview(
        workspace=request.workspace,
        subject=values.get("subject", ""),
        preheader=values.get("preheader", ""),
        html=values.get("html", ""),
        text=values.get("text", ""),
        layout=_layout(request, campaign, values.get("template", _NOT_GIVEN)),
        contact=contact,
    )
    inbox = None
    if result.rendered is not None:
        from_email = values.get("from_email", "")
        inbox = {
            "from_name": " ".join(values.get("from_name", "").split()) or from_email,
            "subject": result.rendered.subject,
            "preheader": _inbox_preheader(
                request, values.get("preheader", ""), result.rendered, contact
            ),
        }
    return {"preview": result, "inbox": inbox, "preview_id": "campaign-preview"}


def _saved_values(campaign: Campaign) -> dict:
    return {
        **{name: getattr(campaign, name) for name in services.EDITABLE_FIELDS},
        "template": campaign.template_id,
    }


@workspace_view()
@require_http_methods(["GET", "POST"])
def campaign_edit(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    can_edit = request.membership.has_role(Role.EDITOR) and campaign.is_editable
    form = CampaignContentForm(request.POST or None, instance=campaign, workspace=request.workspace)
    # A form without the tracking fieldset keeps the switches as they are.
    tracking_posted = CampaignTrackingForm.MARKER in request.POST
    tracking = CampaignTrackingForm(request.POST if tracking_posted else None, instance=campaign)
    status = 200
    if request.method == "POST":
        if form.is_valid() and (not tracking_posted or tracking.is_valid()):
            fields = dict(form.cleaned_data)
            if "template" not in request.POST:  # a form without the picker keeps the layout
                fields.pop("template")
            if tracking_posted:
                fields.update(tracking.cleaned_data)
            try:
                services.campaign_update(campaign=campaign, acting_user=request.user, **fields)
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
        for field in [*form.fields.values(), *tracking.fields.values()]:
            field.disabled = True
    values = request.POST if request.method == "POST" else _saved_values(campaign)
    if form.has_error("template"):  # not a layout of this workspace: the form says so
        values = {**values.dict(), "template": campaign.template_id}
    response = render(
        request,
        "campaigns/campaign_edit.html",
        {
            "campaign": campaign,
            "form": form,
            "tracking_form": tracking,
            "can_edit": can_edit,
            "contacts": selectors.preview_contact_choices(workspace=request.workspace),
            **_preview_of(request, campaign, values),
        },
        status=status,
    )
    return preview_csp(response)


@workspace_view()
@require_http_methods(["GET", "POST"])
def campaign_preview(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    """The preview panel: of the editor's unsaved form (POST) or of the saved campaign (GET)."""
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    if request.method == "POST":
        values = request.POST
    else:
        values = {**_saved_values(campaign), "preview_contact": request.GET.get("preview_contact")}
    response = render(
        request,
        "campaigns/_email_preview.html#frame",
        {"campaign": campaign, **_preview_of(request, campaign, values)},
    )
    return preview_csp(response)
