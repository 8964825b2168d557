"""Reads of the campaigns app; views go through these."""

from django.db.models import CharField, Count, F, Func, Prefetch, Q, QuerySet
from django.http import Http404

from accounts.models import Workspace
from campaigns.models import AbTest, Campaign, Template, Variant
from contacts.models import Contact, ContactList, Segment
from contacts.selectors import list_index

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


CAMPAIGN_PAGE_SIZE = 50
_LIVE = Q(archived_at__isnull=True)
# The list's filter tabs: key -> (label, condition). Archived campaigns show only in theirs.
CAMPAIGN_FILTERS: dict[str, tuple[str, Q]] = {
    "all": ("All", _LIVE),
    "draft": ("Drafts", _LIVE & Q(status=Campaign.Status.DRAFT)),
    "scheduled": ("Scheduled", _LIVE & Q(status=Campaign.Status.SCHEDULED)),
    "sending": (
        "Sending",
        _LIVE & Q(status__in=[Campaign.Status.SENDING, Campaign.Status.PAUSED]),
    ),
    "sent": ("Sent", _LIVE & Q(status=Campaign.Status.SENT)),
    "cancelled": ("Cancelled", _LIVE & Q(status=Campaign.Status.CANCELLED)),
    "archived": ("Archived", Q(archived_at__isnull=False)),
}


def _tagged(campaigns: QuerySet[Campaign], tag: str) -> QuerySet[Campaign]:
    return campaigns.filter(tags__contains=[tag]) if tag else campaigns


def campaign_filter_counts(*, workspace: Workspace, tag: str = "") -> dict[str, int]:
    """How many campaigns each filter tab holds, in one query."""
    campaigns = _tagged(Campaign.objects.for_workspace(workspace), tag)
    return campaigns.aggregate(
        **{key: Count("pk", filter=condition) for key, (_, condition) in CAMPAIGN_FILTERS.items()}
    )


def _names(model) -> QuerySet:
    return model.objects.only("pk", "name").order_by("name")


def campaign_index(
    *, workspace: Workspace, state: str = "all", tag: str = ""
) -> QuerySet[Campaign]:
    """The campaigns of one filter tab, with their audiences' names prefetched."""
    _, condition = CAMPAIGN_FILTERS.get(state, CAMPAIGN_FILTERS["all"])
    order = ("scheduled_at", "pk") if state == "scheduled" else ("-updated_at", "-pk")
    return (
        _tagged(Campaign.objects.for_workspace(workspace), tag)
        .filter(condition)
        .prefetch_related(
            Prefetch("include_lists", queryset=_names(ContactList)),
            Prefetch("include_segments", queryset=_names(Segment)),
            Prefetch("exclude_lists", queryset=_names(ContactList)),
            Prefetch("exclude_segments", queryset=_names(Segment)),
        )
        .order_by(*order)
    )


def campaign_tags(*, workspace: Workspace) -> list[str]:
    """Every tag the workspace's campaigns carry, sorted, in one query."""
    tag = Func(F("tags"), function="jsonb_array_elements_text", output_field=CharField())
    kind = Func(F("tags"), function="jsonb_typeof", output_field=CharField())
    return list(
        Campaign.objects.for_workspace(workspace)
        .annotate(tags_kind=kind)
        .filter(tags_kind="array")
        .annotate(tag=tag)
        .values_list("tag", flat=True)
        .distinct()
        .order_by("tag")
    )


def campaign_audience_choices(*, workspace: Workspace) -> dict[str, QuerySet]:
    """The lists (with subscriber counts) and segments the audience tab offers."""
    return {
        "lists": list_index(workspace=workspace),
        "segments": Segment.objects.for_workspace(workspace).order_by("name"),
    }


def campaign_audience_selected(*, campaign: Campaign) -> dict[str, set[int]]:
    """The ids of the lists and segments a campaign includes and excludes."""
    return {
        name: set(getattr(campaign, name).values_list("pk", flat=True))
        for name in ("include_lists", "include_segments", "exclude_lists", "exclude_segments")
    }


def ab_test_get(*, campaign: Campaign) -> AbTest | None:
    """A campaign's A/B design with its winner, or None when it has none."""
    return AbTest.objects.select_related("winner", "campaign").filter(campaign=campaign).first()


def variant_list(*, campaign: Campaign) -> QuerySet[Variant]:
    return Variant.objects.filter(campaign=campaign).order_by("label")
