"""The design of a campaign's A/B test: stored and described here.

Campaigns only keeps the design (share, metric, wait, variants). Sending sends the test
share and holds the rest; tracking picks the winner after the wait and releases the rest.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User
from campaigns.models import AbTest, Campaign, Variant
from campaigns.rendering import TemplateError, compile_template
from campaigns.rendering.engine import Mode

MIN_VARIANTS, MAX_VARIANTS = 2, 5
LABELS = "ABCDE"
MIN_SHARE, MAX_SHARE = 1, 50
MIN_WAIT_MINUTES, MAX_WAIT_MINUTES = 30, 7 * 24 * 60
SUBJECT_MAX_LENGTH = Variant._meta.get_field("subject").max_length


@dataclass(frozen=True)
class AbSplit:
    test_total: int  # contacts that get a variant
    per_variant: tuple[int, ...]  # of those, per variant (A first)
    remainder: int  # contacts that wait for the winner


def ab_split(*, audience_size: int, test_share_percent: int, variant_count: int) -> AbSplit:
    """How an audience divides: the test share (rounded down) spread evenly over the variants,
    the first variants taking one more when it does not divide."""
    test_total = audience_size * test_share_percent // 100
    base, extra = divmod(test_total, variant_count) if variant_count else (0, 0)
    per_variant = tuple(base + (1 if index < extra else 0) for index in range(variant_count))
    return AbSplit(
        test_total=test_total, per_variant=per_variant, remainder=audience_size - test_total
    )


def _variant_problems(index: int, variant: dict) -> dict[str, str]:
    label = LABELS[index] if index < len(LABELS) else str(index + 1)
    problems = {}
    subject = str(variant.get("subject") or "").strip()
    html = str(variant.get("html") or "")
    if not subject:
        problems[f"variants.{index}.subject"] = f"Variant {label}: a subject is required."
    elif "\r" in subject or "\n" in subject:
        problems[f"variants.{index}.subject"] = f"Variant {label}: the subject must be one line."
    elif len(subject) > SUBJECT_MAX_LENGTH:
        problems[f"variants.{index}.subject"] = (
            f"Variant {label}: the subject is longer than {SUBJECT_MAX_LENGTH} characters."
        )
    else:
        try:
            compile_template(subject, mode=Mode.TEXT)
        except TemplateError as error:
            problems[f"variants.{index}.subject"] = f"Variant {label} subject: {error}"
    if html.strip():
        try:
            compile_template(html, mode=Mode.HTML)
        except TemplateError as error:
            problems[f"variants.{index}.html"] = f"Variant {label} HTML: {error}"
    return problems


def ab_design_problems(
    *, test_share_percent: int, metric: str, wait_minutes: int, variants: Sequence[dict]
) -> dict[str, str]:
    """What is wrong with a design, keyed by field (`variants.<index>.subject` for a variant)."""
    problems = {}
    if not isinstance(test_share_percent, int) or not (
        MIN_SHARE <= test_share_percent <= MAX_SHARE
    ):
        problems["test_share_percent"] = (
            f"The test share must be between {MIN_SHARE}% and {MAX_SHARE}% of the audience."
        )
    if metric not in AbTest.Metric.values:
        problems["metric"] = "Choose unique opens or unique clicks to pick the winner."
    if not isinstance(wait_minutes, int) or not (
        MIN_WAIT_MINUTES <= wait_minutes <= MAX_WAIT_MINUTES
    ):
        problems["wait_minutes"] = "The wait must be between 30 minutes and 7 days."
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        problems["variants"] = f"An A/B test needs {MIN_VARIANTS} to {MAX_VARIANTS} variants."
    for index, variant in enumerate(variants[:MAX_VARIANTS]):
        problems.update(_variant_problems(index, variant))
    return problems


def _draft_locked(campaign: Campaign) -> None:
    # The row lock keeps a concurrent schedule from starting the campaign mid-change.
    status = (
        Campaign.objects.select_for_update().values_list("status", flat=True).get(pk=campaign.pk)
    )
    if status != Campaign.Status.DRAFT:
        raise ApplicationError("Only draft campaigns can change their A/B test.")


@transaction.atomic
def ab_test_save(
    *,
    campaign: Campaign,
    enabled: bool,
    test_share_percent: int,
    metric: str,
    wait_minutes: int,
    variants: Sequence[dict],
    acting_user: User | None = None,
) -> AbTest | None:
    """Store a draft's A/B design, replacing its variants; disabled, the design is removed."""
    _draft_locked(campaign)
    if not enabled:
        removed, _ = AbTest.objects.filter(campaign=campaign).delete()
        Variant.objects.filter(campaign=campaign).delete()
        if removed:
            audit_record(
                workspace=campaign.workspace,
                actor=acting_user,
                verb="campaign.ab_test_removed",
                target=campaign,
            )
        return None
    problems = ab_design_problems(
        test_share_percent=test_share_percent,
        metric=metric,
        wait_minutes=wait_minutes,
        variants=variants,
    )
    if problems:
        raise ApplicationError(next(iter(problems.values())), extra={"errors": problems})
    ab_test, _ = AbTest.objects.update_or_create(
        campaign=campaign,
        defaults={
            "workspace": campaign.workspace,
            "test_share_percent": test_share_percent,
            "metric": metric,
            "wait_minutes": wait_minutes,
            "winner": None,
            "decided_at": None,
        },
    )
    Variant.objects.filter(campaign=campaign).delete()
    Variant.objects.bulk_create(
        Variant(
            workspace=campaign.workspace,
            campaign=campaign,
            label=LABELS[index],
            subject=str(variant.get("subject") or "").strip(),
            html=str(variant.get("html") or "").strip(),
        )
        for index, variant in enumerate(variants)
    )
    audit_record(
        workspace=campaign.workspace,
        actor=acting_user,
        verb="campaign.ab_test_saved",
        target=campaign,
        details={
            "test_share_percent": test_share_percent,
            "metric": metric,
            "wait_minutes": wait_minutes,
            "variants": len(variants),
        },
    )
    return ab_test


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def wait_words(minutes: int) -> str:
    """A wait in words: "4 hours", "1 hour 30 minutes", "2 days"."""
    days, rest = divmod(minutes, 24 * 60)
    if days and not rest:
        return _plural(days, "day")
    hours, minutes = divmod(minutes, 60)
    parts = [_plural(hours, "hour")] if hours else []
    if minutes or not parts:
        parts.append(_plural(minutes, "minute"))
    return " ".join(parts)


def _percent(value: float) -> str:
    return f"{round(value, 1):g}%"


def ab_plan_summary(ab_test: AbTest, audience_size: int | None = None) -> str:
    """The design in one sentence for the page, with contact numbers when the size is known."""
    variants = list(ab_test.campaign.variants.all())
    count = len(variants)
    if not count:
        return "No variants yet: add 2 to 5 to test."
    # Variants with their own body test more than the subject line.
    thing = "version" if any(variant.html.strip() for variant in variants) else "subject"
    metric = "more unique clicks" if ab_test.metric == AbTest.Metric.CLICKS else "more unique opens"
    share = ab_test.test_share_percent
    wait = wait_words(ab_test.wait_minutes)
    if audience_size is None:
        return (
            f"{share}% of the audience gets one of {count} {thing}s "
            f"({_percent(share / count)} each); after {wait} the {thing} with {metric} "
            f"goes to the remaining {100 - share}%."
        )
    split = ab_split(audience_size=audience_size, test_share_percent=share, variant_count=count)
    low, high = min(split.per_variant), max(split.per_variant)
    each = f"{low:,}" if low == high else f"{low:,} to {high:,}"
    summary = (
        f"{share}% of the audience ({split.test_total:,} of {_plural(audience_size, 'contact')}) "
        f"gets one of {count} {thing}s ({each} each); after {wait} the {thing} with {metric} "
        f"goes to the remaining {100 - share}% ({_plural(split.remainder, 'contact')})."
    )
    if low == 0:
        summary += " Some variants would reach nobody: widen the audience or the test share."
    return summary
