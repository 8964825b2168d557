"""Writes of the campaigns app."""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from campaigns.models import AbTest, Campaign, Template, Variant
from campaigns.selectors import campaign_tags
from campaigns.starters import Starter
from contacts.models import ContactList, Segment

EDITABLE_FIELDS = (
    "subject",
    "preheader",
    "from_name",
    "from_email",
    "reply_to",
    "html",
    "text",
    "track_opens",
    "track_clicks",
    "web_version",
)


@transaction.atomic
def template_from_starter(
    *, workspace: Workspace, starter: Starter, acting_user: User | None = None
) -> Template:
    """The workspace's copy of a built-in layout, made (as its version 1) on first use."""
    template, created = Template.objects.get_or_create(
        workspace=workspace,
        name=starter.name,
        is_starter=True,
        defaults={"html": starter.html},
    )
    if created:
        template.versions.create(
            workspace=workspace,
            number=1,
            html=template.html,
            created_by=acting_user if acting_user is not None and acting_user.pk else None,
        )
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="template.created",
            target=template,
            details={"starter": starter.key},
        )
    return template


@transaction.atomic
def campaign_create(
    *, workspace: Workspace, name: str, starter: Starter | None, acting_user: User | None
) -> Campaign:
    """A draft in the chosen starter layout, with the starter's sample body."""
    template = template_from_starter(workspace=workspace, starter=starter) if starter else None
    campaign = Campaign.objects.create(
        workspace=workspace,
        name=name,
        template=template,
        html=starter.body if starter else "",
        created_by=acting_user,
    )
    audit_record(workspace=workspace, actor=acting_user, verb="campaign.created", target=campaign)
    return campaign


@transaction.atomic
def campaign_update(
    *, campaign: Campaign, acting_user: User | None, **fields: str | Template | None
) -> Campaign:
    """Save the content of a draft; campaigns that have left the draft state are read-only.

    `template` (a Template of the campaign's workspace, or None for no layout) is the layout.
    """
    if not campaign.is_editable:
        raise ApplicationError("Only draft campaigns can be edited.")
    layout = fields.get("template")
    if layout is not None and (
        not isinstance(layout, Template) or layout.workspace_id != campaign.workspace_id
    ):
        raise ApplicationError("Choose a layout of this workspace.")
    unknown = set(fields) - {*EDITABLE_FIELDS, "template"}
    if unknown:
        raise ApplicationError(f"Unknown fields: {', '.join(sorted(unknown))}.")
    for name, value in fields.items():
        setattr(campaign, name, value)
    campaign.updated_at = timezone.now()
    campaign.save(update_fields=[*fields, "updated_at"])
    return campaign


TAG_LIMIT = 20
TAG_MAX_LENGTH = 40
# A campaign on its way out can't be hidden: it is cancelled or sent first.
ARCHIVABLE_STATUSES = (Campaign.Status.DRAFT, Campaign.Status.SENT, Campaign.Status.CANCELLED)


def campaign_tags_clean(*, workspace: Workspace, tags: Iterable[str]) -> list[str]:
    """Tags trimmed, blanks dropped, duplicates removed ignoring case; a tag the workspace
    already uses keeps that spelling, so "spring" joins "Spring"."""
    known = {tag.casefold(): tag for tag in reversed(campaign_tags(workspace=workspace))}
    cleaned: dict[str, str] = {}
    for raw in tags:
        tag = " ".join(str(raw).split())
        if not tag:
            continue
        if "," in tag:
            raise ApplicationError("Tags cannot contain commas.")
        if len(tag) > TAG_MAX_LENGTH:
            raise ApplicationError(
                f"Tags are at most {TAG_MAX_LENGTH} characters: “{tag[:TAG_MAX_LENGTH]}…”."
            )
        cleaned.setdefault(tag.casefold(), known.get(tag.casefold(), tag))
    if len(cleaned) > TAG_LIMIT:
        raise ApplicationError(f"A campaign has at most {TAG_LIMIT} tags.")
    return list(cleaned.values())


def _lock_status(campaign: Campaign) -> str:
    # The row lock keeps a concurrent schedule or send from acting on a half-made change.
    status = (
        Campaign.objects.select_for_update().values_list("status", flat=True).get(pk=campaign.pk)
    )
    campaign.status = status
    return status


def _names(rows: Iterable[ContactList | Segment]) -> str:
    return ", ".join(f"“{row}”" for row in rows)


@transaction.atomic
def campaign_audience_update(
    *,
    campaign: Campaign,
    include_lists: Iterable[ContactList],
    include_segments: Iterable[Segment],
    exclude_lists: Iterable[ContactList],
    exclude_segments: Iterable[Segment],
    tags: Iterable[str],
    acting_user: User | None,
) -> Campaign:
    """Set who a draft goes to (lists and segments in, lists and segments out) and its tags."""
    if _lock_status(campaign) != Campaign.Status.DRAFT:
        raise ApplicationError("Only draft campaigns can change their audience.")
    chosen = {
        "include_lists": list(include_lists),
        "include_segments": list(include_segments),
        "exclude_lists": list(exclude_lists),
        "exclude_segments": list(exclude_segments),
    }
    if any(row.workspace_id != campaign.workspace_id for rows in chosen.values() for row in rows):
        # Not named: the row belongs to someone else.
        raise ApplicationError("A list or segment that is not in this workspace was chosen.")
    for kind in ("lists", "segments"):
        excluded = {row.pk for row in chosen[f"exclude_{kind}"]}
        both = [row for row in chosen[f"include_{kind}"] if row.pk in excluded]
        if both:
            raise ApplicationError(f"{_names(both)} cannot be both included and excluded.")
    cleaned_tags = campaign_tags_clean(workspace=campaign.workspace, tags=tags)
    for name, rows in chosen.items():
        getattr(campaign, name).set(rows)
    campaign.tags = cleaned_tags
    campaign.updated_at = timezone.now()
    campaign.save(update_fields=["tags", "updated_at"])
    audit_record(
        workspace=campaign.workspace,
        actor=acting_user,
        verb="campaign.audience_updated",
        target=campaign,
        details={
            **{name: sorted(row.pk for row in rows) for name, rows in chosen.items()},
            "tags": cleaned_tags,
        },
    )
    return campaign


def _copy_name(name: str) -> str:
    limit = Campaign._meta.get_field("name").max_length
    return f"Copy of {name}"[:limit]


@transaction.atomic
def campaign_duplicate(*, campaign: Campaign, acting_user: User | None) -> Campaign:
    """A new draft with the same content, layout, audience, tags and A/B design; the copy is
    never scheduled nor archived, whatever became of the original."""
    copy = Campaign.objects.create(
        workspace=campaign.workspace,
        name=_copy_name(campaign.name),
        template=campaign.template,
        tags=list(campaign.tags or []),
        created_by=acting_user,
        **{name: getattr(campaign, name) for name in EDITABLE_FIELDS},
    )
    copy.include_lists.set(campaign.include_lists.all())
    copy.include_segments.set(campaign.include_segments.all())
    copy.exclude_lists.set(campaign.exclude_lists.all())
    copy.exclude_segments.set(campaign.exclude_segments.all())
    ab_test = AbTest.objects.filter(campaign=campaign).first()
    if ab_test is not None:
        # The design only: the winner belongs to the original's send.
        AbTest.objects.create(
            workspace=campaign.workspace,
            campaign=copy,
            test_share_percent=ab_test.test_share_percent,
            metric=ab_test.metric,
            wait_minutes=ab_test.wait_minutes,
        )
    Variant.objects.bulk_create(
        Variant(
            workspace=campaign.workspace,
            campaign=copy,
            label=variant.label,
            subject=variant.subject,
            html=variant.html,
        )
        for variant in Variant.objects.filter(campaign=campaign)
    )
    audit_record(
        workspace=campaign.workspace,
        actor=acting_user,
        verb="campaign.duplicated",
        target=copy,
        details={"source_id": campaign.pk, "source_name": campaign.name},
    )
    return copy


@transaction.atomic
def campaign_archive(*, campaign: Campaign, archived: bool, acting_user: User | None) -> Campaign:
    """Hide a campaign from the list's tabs (or bring it back); the rows stay for reports."""
    status = _lock_status(campaign)
    if archived and status == Campaign.Status.SCHEDULED:
        raise ApplicationError(
            "This campaign is scheduled: unschedule or cancel it before archiving it."
        )
    if archived and status not in ARCHIVABLE_STATUSES:
        raise ApplicationError(
            "This campaign is sending: cancel it or wait until it is sent before archiving it."
        )
    if (campaign.archived_at is not None) == archived:
        return campaign
    campaign.archived_at = timezone.now() if archived else None
    campaign.save(update_fields=["archived_at"])
    audit_record(
        workspace=campaign.workspace,
        actor=acting_user,
        verb="campaign.archived" if archived else "campaign.unarchived",
        target=campaign,
    )
    return campaign
