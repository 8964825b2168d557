"""Segment conditions on opens and clicks of one campaign, registered into contacts'
segment registry at start-up (contacts never imports tracking).

"Opened campaign" counts every open, machine-judged ones included: Apple Mail Privacy
Protection fetches the pixel of every message its users receive, so for a large share of
readers that fetch is the only sign the mail reached an inbox, and dropping it would call
them non-openers. "Clicked campaign" counts human clicks only: link scanners click every
link of the mail they screen, which says nothing about the person.

Opened or clicked *any* campaign are the contacts app's own engagement conditions
("Opened a campaign", "Clicked a link") on Contact.last_opened_at / last_clicked_at, which
the ingestion path keeps from human events.
"""

from django.db.models import Exists, OuterRef, Q

from accounts.models import Workspace
from campaigns.models import Campaign
from contacts.segments.registry import (
    CompileContext,
    Condition,
    Operator,
    ValueKind,
    segment_conditions,
)
from tracking.models import Event

# Campaigns that never started have no events to test.
_UNSENT = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)


def _sent_campaign_choices(workspace: Workspace) -> list[tuple[int, str]]:
    campaigns = (
        Campaign.objects.for_workspace(workspace)
        .exclude(status__in=_UNSENT)
        .order_by("-updated_at", "-pk")
    )
    return list(campaigns.values_list("pk", "name"))


def _events(ctx: CompileContext, value, **filters) -> Exists:
    campaign_id, days = value
    return Exists(
        Event.objects.filter(
            workspace=ctx.workspace,
            contact=OuterRef("pk"),
            campaign_id=campaign_id,
            occurred_at__gte=ctx.days_ago(days),
            **filters,
        )
    )


def _compile_opened(ctx: CompileContext, operator: str, value) -> Q:
    opened = _events(ctx, value, kind=Event.Kind.OPEN)
    return Q(opened) if operator == "opened" else ~Q(opened)


def _compile_clicked(ctx: CompileContext, operator: str, value) -> Q:
    # Humans only (see the module's docstring).
    clicked = _events(ctx, value, kind=Event.Kind.CLICK, machine_rule="")
    return Q(clicked) if operator == "clicked" else ~Q(clicked)


K = ValueKind

CONDITIONS = (
    Condition(
        key="opened_campaign",
        label="Opened campaign",
        group="Engagement",
        operators=(
            Operator("opened", "opened … in the last … days", K.CHOICE_DAYS),
            Operator("not_opened", "did not open … in the last … days", K.CHOICE_DAYS),
        ),
        choices=_sent_campaign_choices,
        compile=_compile_opened,
    ),
    Condition(
        key="clicked_campaign",
        label="Clicked in campaign",
        group="Engagement",
        operators=(
            Operator("clicked", "clicked a link of … in the last … days", K.CHOICE_DAYS),
            Operator("not_clicked", "did not click in … in the last … days", K.CHOICE_DAYS),
        ),
        choices=_sent_campaign_choices,
        compile=_compile_clicked,
    ),
)


def segment_conditions_register() -> None:
    for condition in CONDITIONS:
        segment_conditions.register(condition, replace=True)
