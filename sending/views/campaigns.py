"""A campaign's send, as the Review & send tab shows it: live progress with bounces by
class, pause, resume, stop, the deliveries that did not go out and each one's story."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns.models import Campaign
from campaigns.selectors import campaign_get
from sending import pipeline, policy, selectors, warmup
from sending.models import Delivery
from sending.tasks import campaign_send_fan_out

# States a marketer may list on the deliveries page, in the order the filter offers them.
LISTED_STATES = ["unknown", "bounced", "complained", "failed", "deferred", "skipped", "sent"]


def _back(request: WorkspaceRequest, campaign: Campaign) -> HttpResponse:
    return redirect(
        "campaigns:campaign_review", workspace_slug=request.workspace.slug, campaign_id=campaign.pk
    )


@workspace_view()
@require_GET
def campaign_progress(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    """The progress panel; it polls itself while the campaign is sending."""
    campaign = campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    notice = policy.campaign_send_notice(campaign=campaign)
    if campaign.status == Campaign.Status.SCHEDULED:  # not started: only a policy's notice
        return render(request, "sending/_campaign_policy_notice.html", {"notice": notice})
    under_way = campaign.status in (Campaign.Status.SENDING, Campaign.Status.PAUSED)
    today = timezone.localdate()
    return render(
        request,
        "sending/_campaign_progress.html",
        {
            "campaign": campaign,
            "notice": notice,
            "progress": pipeline.campaign_progress(campaign=campaign),
            "feedback": selectors.campaign_feedback_counts(campaign=campaign),
            "send": getattr(campaign, "send", None),
            "can_edit": request.membership.has_role(Role.EDITOR),
            "polling": campaign.status == Campaign.Status.SENDING,
            "today": today,
            "warmup_lines": warmup.campaign_warmup_lines(campaign=campaign, today=today)
            if under_way
            else [],
        },
    )


def _control(request: WorkspaceRequest, campaign_id: int, action, done: str) -> HttpResponse:
    campaign = campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    try:
        action(campaign=campaign, acting_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, done)
    return _back(request, campaign)


@workspace_view(Role.EDITOR)
@require_POST
def campaign_pause(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    return _control(
        request, campaign_id, pipeline.campaign_pause, "Paused: no new messages go out."
    )


def _resume_and_restart(*, campaign: Campaign, acting_user) -> None:
    pipeline.campaign_resume(campaign=campaign, acting_user=acting_user)
    campaign_send_fan_out(campaign.pk)


@workspace_view(Role.EDITOR)
@require_POST
def campaign_resume(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    return _control(request, campaign_id, _resume_and_restart, "Resumed.")


@workspace_view(Role.EDITOR)
@require_POST
def campaign_stop(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    return _control(
        request,
        campaign_id,
        pipeline.campaign_stop,
        "Cancelled: messages not yet handed over will not be sent.",
    )


@workspace_view()
@require_GET
def campaign_deliveries(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    """The deliveries of one state, with their last answer: what a marketer checks after a
    send (unknown outcomes, bounces, failures)."""
    campaign = campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    state = request.GET.get("state", "unknown")
    if state not in LISTED_STATES:
        state = "unknown"
    # A complaint arrives after the message was sent: those deliveries stay `sent`.
    which = {"complained_at__isnull": False} if state == "complained" else {"state": state}
    deliveries = (
        Delivery.objects.for_workspace(request.workspace)
        .filter(campaign=campaign, **which)
        .order_by("pk")
        .only("address", "state", "last_response", "skip_reason", "bounce_class", "updated_at")
    )
    page = Paginator(deliveries, 100).get_page(request.GET.get("page"))
    return render(
        request,
        "sending/campaign_deliveries.html",
        {"campaign": campaign, "state": state, "states": LISTED_STATES, "page": page},
    )


@workspace_view()
@require_GET
def delivery_detail(request: WorkspaceRequest, campaign_id: int, delivery_id: int) -> HttpResponse:
    """One delivery: its attempts with the servers' answers, and what came back after."""
    campaign = campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    delivery = selectors.delivery_get(
        workspace=request.workspace, campaign_id=campaign.pk, delivery_id=delivery_id
    )
    return render(
        request,
        "sending/delivery_detail.html",
        {
            "campaign": campaign,
            "delivery": delivery,
            "attempts": selectors.delivery_attempt_list(delivery=delivery),
            "feedback": selectors.delivery_feedback_list(delivery=delivery),
            "listed_states": LISTED_STATES,
        },
    )
