"""The A/B winner step: after the wait, the variant with the best human rate wins and the
held rest of the audience is released with it.

At send start the test share got the variants and the rest was put on hold
(sending/services/deliveries.py `_split_for_ab_test`). The wait counts from the send's
start (CampaignSend.started_at + AbTest.wait_minutes), the time the marketer chose on the
A/B tab, and the winner is picked only once no test delivery is still queued, claimed or
in flight, so that a slow test share is judged on mail that went out. Deferred test
deliveries do not hold the winner back: their retries may take hours.

The rate is unique human opens (or clicks) per delivered test message of the variant:
machine opens (Apple's proxy, scanners) say nothing about the subject line.
"""

import datetime as dt
import logging
from dataclasses import dataclass
from fractions import Fraction

from django.db import transaction
from django.db.models import Count, DateTimeField, DurationField, Exists, F, OuterRef, Q, QuerySet
from django.db.models import ExpressionWrapper as Expr
from django.db.models import Value as V
from django.utils import timezone

from accounts.audit import audit_record
from campaigns.models import AbTest, Campaign, Variant
from sending.models import Delivery
from sending.tasks import campaign_send_fan_out

logger = logging.getLogger(__name__)

State = Delivery.State
# Test deliveries in these states may still go out within minutes: the winner waits for them.
_TEST_PENDING = [State.QUEUED, State.CLAIMED, State.IN_FLIGHT]


@dataclass(frozen=True)
class VariantResult:
    label: str
    delivered: int
    unique: int  # recipients with at least one human open (or click)

    @property
    def rate(self) -> Fraction:
        return Fraction(self.unique, self.delivered) if self.delivered else Fraction(0)


def _due_tests(*, now: dt.datetime) -> QuerySet[AbTest]:
    """Undecided tests of sending campaigns, waited out, whose test share is handed over."""
    decided_from = Expr(
        F("campaign__send__started_at")
        + F("wait_minutes") * V(dt.timedelta(minutes=1), output_field=DurationField()),
        output_field=DateTimeField(),
    )
    test_pending = Delivery.objects.filter(
        campaign_id=OuterRef("campaign_id"), variant__isnull=False, state__in=_TEST_PENDING
    )
    has_variants = Variant.objects.filter(campaign_id=OuterRef("campaign_id"))
    return (
        AbTest.objects.filter(
            winner__isnull=True,
            campaign__status=Campaign.Status.SENDING,
        )
        .alias(decided_from=decided_from)
        .filter(decided_from__lte=now)
        .filter(Exists(has_variants), ~Exists(test_pending))
    )


def ab_winners_due(*, now: dt.datetime) -> list[int]:
    """Ids of the A/B tests whose winner is due now."""
    return list(_due_tests(now=now).order_by("pk").values_list("pk", flat=True))


def ab_results(*, ab_test: AbTest) -> list[VariantResult]:
    """Each variant's delivered test messages and its unique human opens or clicks, by label.

    Delivered: test deliveries in state sent (a later bounce changes the state). Unique:
    those of them with a human event in their DeliveryActivity.
    """
    human = "human_opens" if ab_test.metric == AbTest.Metric.OPENS else "human_clicks"
    counts = {
        row["variant_id"]: row
        for row in Delivery.objects.filter(
            campaign_id=ab_test.campaign_id, variant__isnull=False, state=State.SENT
        )
        .order_by()
        .values("variant_id")
        .annotate(
            delivered=Count("pk"), unique=Count("pk", filter=Q(**{f"activity__{human}__gt": 0}))
        )
    }
    results = []
    for variant in Variant.objects.filter(campaign_id=ab_test.campaign_id).order_by("label"):
        row = counts.get(variant.pk, {})
        results.append(
            VariantResult(
                label=variant.label,
                delivered=row.get("delivered", 0),
                unique=row.get("unique", 0),
            )
        )
    return results


@transaction.atomic
def ab_winner_pick(*, ab_test: AbTest, now: dt.datetime) -> Variant | None:
    """If the test's winner is due: record the variant with the highest rate (ties: the
    lower label), audit it, and release the holding deliveries with it. None when not due
    (waiting, already decided, not sending)."""
    # The campaign's lock first, as pause and stop take it: neither can change the
    # campaign between the check and the release.
    campaign = (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("workspace")
        .get(pk=ab_test.campaign_id)
    )
    locked = _due_tests(now=now).select_for_update(of=("self",)).filter(pk=ab_test.pk).first()
    if locked is None:
        return None
    results = ab_results(ab_test=locked)
    variants = {v.label: v for v in Variant.objects.filter(campaign_id=locked.campaign_id)}
    # max() keeps the first of equals: results are in label order, so a tie goes to the
    # lower label.
    best = max(results, key=lambda result: result.rate)
    nothing_delivered = not any(result.delivered for result in results)
    winner = variants[results[0].label if nothing_delivered else best.label]

    locked.winner, locked.decided_at = winner, now
    locked.save(update_fields=["winner", "decided_at"])
    released = Delivery.objects.filter(campaign_id=locked.campaign_id, state=State.HOLDING).update(
        variant=winner, state=State.QUEUED, updated_at=timezone.now()
    )
    details = {
        "winner": winner.label,
        "metric": locked.metric,
        "released": released,
        "results": {
            r.label: {"delivered": r.delivered, "unique": r.unique, "rate": float(r.rate)}
            for r in results
        },
    }
    if nothing_delivered:
        details["note"] = "No test message was delivered: the first variant was sent."
    audit_record(
        workspace=campaign.workspace,
        actor=None,
        verb="campaign.ab_winner_picked",
        target=campaign,
        details=details,
    )
    # Enqueues after commit: the workers see the released rows.
    campaign_send_fan_out(campaign.pk)
    logger.info("A/B winner %s of campaign %s; %s released", winner.label, campaign.pk, released)
    return winner
