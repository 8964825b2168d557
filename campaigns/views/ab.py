"""The A/B test tab: the design of a campaign's test, its plan in words, and its winner."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import ab, selectors
from campaigns.audience import audience_count
from campaigns.forms import AbTestForm
from campaigns.models import AbTest, Campaign, Variant


def _initial(campaign: Campaign, ab_test: AbTest | None, variants: list[Variant]) -> dict:
    if ab_test is None:
        return {"enabled": False, "subject_1": campaign.subject}
    initial = {
        "enabled": True,
        "test_share_percent": ab_test.test_share_percent,
        "metric": ab_test.metric,
        # "4", "2.5", "100": never the exponent form Decimal.normalize() gives for 100.
        "wait_hours": f"{ab_test.wait_minutes / 60:.2f}".rstrip("0").rstrip("."),
    }
    for slot, variant in enumerate(variants, start=1):
        initial[f"subject_{slot}"] = variant.subject
        initial[f"html_{slot}"] = variant.html
    return initial


def _save(request: WorkspaceRequest, campaign: Campaign, form: AbTestForm) -> bool:
    """Store what the form holds; False (with the problems on the form) when refused."""
    enabled = form.wants_test()
    if enabled and not form.is_valid():
        messages.error(request, "Fix the A/B design below.")
        return False
    rows = form.variant_rows() if enabled else []
    wait_hours = form.cleaned_data.get("wait_hours") if enabled else None
    try:
        ab.ab_test_save(
            campaign=campaign,
            enabled=enabled,
            test_share_percent=form.cleaned_data.get("test_share_percent") if enabled else 0,
            metric=form.cleaned_data.get("metric", "") if enabled else "",
            wait_minutes=round(wait_hours * 60) if wait_hours is not None else 0,
            variants=[variant for _, variant in rows],
            acting_user=request.user,
        )
    except ApplicationError as error:
        problems = error.extra.get("errors", {}) if enabled else {}
        messages.error(request, "Fix the A/B design below." if problems else error.message)
        form.add_design_errors(problems, [slot for slot, _ in rows])
        return False
    messages.success(request, "A/B design saved." if enabled else "A/B test turned off.")
    return True


@workspace_view()
@require_http_methods(["GET", "POST"])
def campaign_ab(request: WorkspaceRequest, campaign_id: int) -> HttpResponse:
    campaign = selectors.campaign_get(workspace=request.workspace, campaign_id=campaign_id)
    can_edit = request.membership.has_role(Role.EDITOR) and campaign.is_editable
    ab_test = selectors.ab_test_get(campaign=campaign)
    variants = list(selectors.variant_list(campaign=campaign))
    status = 200
    if request.method == "POST":
        form = AbTestForm(request.POST)
        if _save(request, campaign, form):
            return redirect(
                "campaigns:campaign_ab",
                workspace_slug=request.workspace.slug,
                campaign_id=campaign.pk,
            )
        status = 400
    else:
        form = AbTestForm(initial=_initial(campaign, ab_test, variants))
    if not can_edit:
        for field in form.fields.values():
            field.disabled = True
    summary = audience_size = None
    if ab_test is not None:
        audience_size = audience_count(campaign=campaign).sendable
        summary = ab.ab_plan_summary(ab_test, audience_size or None)
    return render(
        request,
        "campaigns/campaign_ab.html",
        {
            "campaign": campaign,
            "form": form,
            "can_edit": can_edit,
            "ab_test": ab_test,
            "variants": variants,
            "summary": summary,
            "audience_size": audience_size,
        },
        status=status,
    )
