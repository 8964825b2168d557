"""The "Review & send" tab: the pre-send checklist, test sends and scheduling."""

from datetime import datetime
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import dateformat, timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import checks, scheduling, selectors, test_send
from campaigns.forms import ScheduleForm, TestSendForm
from campaigns.models import Campaign
from campaigns.panels import campaign_panels
from contacts import selectors as contact_selectors

_OPEN = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)


def _back(request: WorkspaceRequest, campaign: Campaign) -> HttpResponse:
    return redirect(
        "campaigns:campaign_review", workspace_slug=request.workspace.slug, campaign_id=campaign.pk
    )


def _schedule_initial(request: WorkspaceRequest, campaign: Campaign) -> dict:
    if campaign.status != Campaign.Status.SCHEDULED or campaign.scheduled_at is None:
        return {"when": ScheduleForm.NOW}
    local = timezone.localtime(campaign.scheduled_at, ZoneInfo(request.workspace.time_zone))
    return {"when": ScheduleForm.LATER, "date": local.date(), "time": local.time()}


def _review_page(
    request: WorkspaceRequest,
    campaign: Campaign,
    *,
    test_form: TestSendForm | None = None,
    schedule_form: ScheduleForm | None = None,
    status: int = 200,
) -> HttpResponse:
    workspace = request.workspace
    contacts = selectors.preview_contact_choices(workspace=workspace)
    checklist = checks.presend_checks(campaign=campaign) if campaign.status in _OPEN else None
    if schedule_form is None:
        schedule_form = ScheduleForm(
            initial=_schedule_initial(request, campaign), time_zone=workspace.time_zone
        )
    return render(
        request,
        "campaigns/campaign_review.html",
        {
            "campaign": campaign,
            "checklist": checklist,
            "can_edit": request.membership.has_role(Role.EDITOR),
            "is_open": campaign.status in _OPEN,
            "test_form": test_form or TestSendForm(contacts=contacts),
            "schedule_form": schedule_form,
            "max_test_addresses": test_send.MAX_ADDRESSES,
            "panels": campaign_panels.url_names,
        },
        status=status,
    )


@workspace_view()
@require_GET
def campaign_review(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    return _review_page(request, campaign)


@workspace_view()
@require_POST
def campaign_test_send(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    contacts = selectors.preview_contact_choices(workspace=request.workspace)
    form = TestSendForm(request.POST, contacts=contacts)
    if not form.is_valid():
        return _review_page(request, campaign, test_form=form, status=400)
    contact_id = form.cleaned_data["contact"]
    contact = (
        contact_selectors.contact_get(workspace=request.workspace, contact_id=int(contact_id))
        if contact_id
        else None
    )
    try:
        sent = test_send.campaign_test_send(
            campaign=campaign,
            addresses=test_send.split_addresses(form.cleaned_data["addresses"]),
            contact=contact,
            acting_user=request.user,
        )
    except ApplicationError as error:
        form.add_error("addresses", error.message)
        return _review_page(request, campaign, test_form=form, status=400)
    messages.success(request, f"Test on its way to {', '.join(sent)}: it arrives within seconds.")
    return _back(request, campaign)


@workspace_view()
@require_POST
def campaign_schedule(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    time_zone = request.workspace.time_zone
    form = ScheduleForm(request.POST, time_zone=time_zone)
    if not form.is_valid():
        return _review_page(request, campaign, schedule_form=form, status=400)
    send_at, note = None, ""
    try:
        if form.cleaned_data["when"] == ScheduleForm.LATER:
            wall = scheduling.local_to_utc(
                local=datetime.combine(form.cleaned_data["date"], form.cleaned_data["time"]),
                time_zone=time_zone,
            )
            send_at, note = wall.utc, wall.note
        scheduling.campaign_schedule(campaign=campaign, send_at=send_at, acting_user=request.user)
    except ApplicationError as error:
        form.add_error(None, error.message)
        return _review_page(request, campaign, schedule_form=form, status=400)
    if send_at is None:
        messages.success(request, "Sending starts in a moment.")
    else:
        local = dateformat.format(
            timezone.localtime(send_at, ZoneInfo(time_zone)), "l j F Y, H:i T"
        )
        messages.success(request, f"Scheduled for {local} ({time_zone}). {note}".strip())
    return _back(request, campaign)


@workspace_view()
@require_POST
def campaign_unschedule(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    try:
        scheduling.campaign_unschedule(campaign=campaign, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Unscheduled: the campaign is a draft again.")
    return _back(request, campaign)


@workspace_view()
@require_POST
def campaign_cancel(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    try:
        scheduling.campaign_cancel(campaign=campaign, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Campaign cancelled: it will not be sent.")
    return _back(request, campaign)
