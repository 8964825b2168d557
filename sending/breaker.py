"""The batch circuit breaker: a campaign goes out in growing batches, and each batch's
outcomes are judged before the next one may be claimed.

CampaignSend.batch_limit is the number of deliveries that may have been taken (claimed,
in flight or finished) so far; batch_number counts the batches opened. A campaign's claims
stop at the limit; once none of the batch's rows is claimed or in flight, the batch is
judged once (under a lock on the CampaignSend row): a hard-bounce, complaint or deferral
rate above its threshold pauses the campaign with the reason and emails the workspace's
owners; otherwise the next batch, BREAKER_GROWTH times larger, opens.

Decisions:
- The first batch is min(BREAKER_FIRST_BATCH, max(BREAKER_MIN_SAMPLE, 10% of the
  campaign)): a tenth of the campaign is enough to judge before the bulk goes, never fewer
  than a sample worth judging, never more than the platform risks on an unknown list. A
  campaign no larger than that goes in one batch and never waits; once a batch limit
  covers every delivery, claims are not counted any more.
- Rates are those of the latest batch: the taken rows in id order after the previous
  limit (claims take queued rows in id order, so these are the batch's rows; rows released
  by an A/B winner or handed back may fall into a later window). A batch of fewer than
  BREAKER_MIN_SAMPLE handed-over deliveries is judged on the whole campaign so far, and
  fewer than that in all trips nothing: 1 bounce in 3 is noise, not a rate.
- A rate trips when strictly above its threshold (5.0% of 100 does not, 6 of 100 does).
- Counting is bounded: a claim check counts at most min(limit, rest + a few chunks)
  entries of the (campaign, state) index, and the verdict reads the batch's rows once.
- Concurrent checks share what is left of a batch (each takes at most 1/SENDING_FANOUT of
  it), so parallel chains of one campaign overshoot a batch by fewer rows than there are
  chains. An exact stop needs the limit inside the claim's transaction.
"""

import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse

from accounts.mail import templated_mail_send
from accounts.models import Membership, Role
from campaigns.models import Campaign
from sending.models import CampaignSend, Delivery

logger = logging.getLogger(__name__)

State = Delivery.State
# A delivery is taken once it has left the queue (claimed, in flight, or done).
UNTAKEN_STATES = [State.QUEUED, State.HOLDING]
TAKEN_STATES = [
    State.CLAIMED,
    State.IN_FLIGHT,
    State.SENT,
    State.DEFERRED,
    State.BOUNCED,
    State.FAILED,
    State.UNKNOWN,
    State.SKIPPED,
]
# Handed to a receiving server: what rates are computed over (a row that failed before
# any hand-over, such as an address that could not be built, has no bounce class).
_HANDED_OVER = Q(state__in=[State.SENT, State.DEFERRED, State.BOUNCED, State.UNKNOWN]) | (
    Q(state=State.FAILED) & ~Q(bounce_class="")
)


def _min_sample() -> int:
    return settings.BREAKER_MIN_SAMPLE


# --- batch arithmetic ---------------------------------------------------------------------


def breaker_first_batch(*, total: int) -> int:
    """The first batch of a campaign of `total` deliveries (see the module's decisions)."""
    tenth = math.ceil(total / 10)
    return max(1, min(settings.BREAKER_FIRST_BATCH, max(_min_sample(), tenth)))


def breaker_batch_limit(*, batch_number: int, total: int) -> int:
    """Deliveries that may have been taken once batch `batch_number` is open (cumulative)."""
    growth = max(settings.BREAKER_GROWTH, 1.0)
    size = breaker_first_batch(total=total)
    limit = 0
    for _ in range(batch_number):
        limit += math.ceil(size)
        if limit >= total:
            return limit
        size *= growth
    return limit


def breaker_batch_open_next(*, send: CampaignSend) -> None:
    """Move `send` (locked by the caller, who saves it) to its next batch."""
    send.batch_number += 1
    send.batch_limit = breaker_batch_limit(
        batch_number=send.batch_number, total=send.deliveries_total
    )


# --- rates and thresholds -----------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Percent of the handed-over deliveries above which a batch trips the breaker."""

    hard_bounce_percent: float
    complaint_percent: float
    deferral_percent: float


@dataclass(frozen=True)
class BatchRates:
    handed_over: int
    hard_bounced: int
    complained: int
    deferred: int
    first_batch: int  # the batches the counts cover: first_batch..last_batch
    last_batch: int

    def percent(self, count: int) -> float:
        return count * 100 / self.handed_over if self.handed_over else 0.0

    @property
    def where(self) -> str:
        if self.first_batch == self.last_batch:
            return f"in batch {self.last_batch}"
        return f"in batches {self.first_batch}-{self.last_batch}"


def _workspace_thresholds(workspace_id: int) -> Thresholds | None:
    """A workspace's own, stricter thresholds: the hook for when SendingPolicy holds them
    (it has none yet)."""
    return None


def breaker_thresholds(*, workspace_id: int) -> Thresholds:
    """The platform's thresholds, tightened (never loosened) by the workspace's."""
    platform = Thresholds(
        hard_bounce_percent=settings.BREAKER_HARD_BOUNCE_PERCENT,
        complaint_percent=settings.BREAKER_COMPLAINT_PERCENT,
        deferral_percent=settings.BREAKER_DEFERRAL_PERCENT,
    )
    own = _workspace_thresholds(workspace_id)
    if own is None:
        return platform
    return Thresholds(
        hard_bounce_percent=min(platform.hard_bounce_percent, own.hard_bounce_percent),
        complaint_percent=min(platform.complaint_percent, own.complaint_percent),
        deferral_percent=min(platform.deferral_percent, own.deferral_percent),
    )


def breaker_verdict(*, rates: BatchRates, thresholds: Thresholds) -> list[str]:
    """What the rates cross, in words ("10.0% hard bounces in batch 1 (limit 5%)"); empty
    when nothing does or the sample is too small to tell."""
    if rates.handed_over < _min_sample():
        return []
    crossed = []
    for count, limit, what in (
        (rates.hard_bounced, thresholds.hard_bounce_percent, "hard bounces"),
        (rates.complained, thresholds.complaint_percent, "complaints"),
        (rates.deferred, thresholds.deferral_percent, "deferrals"),
    ):
        # Compared in counts, not floats: exactly 5% of 100 is 5 and does not trip.
        if count * 100 > limit * rates.handed_over:
            crossed.append(f"{rates.percent(count):.1f}% {what} {rates.where} (limit {limit:g}%)")
    return crossed


def _rates(*, campaign_id: int, skip: int, first_batch: int, last_batch: int) -> BatchRates:
    """Counts over the campaign's taken rows in id order after the first `skip`."""
    window = (
        Delivery.objects.filter(campaign_id=campaign_id, state__in=TAKEN_STATES)
        .order_by("pk")
        .values("state", "bounce_class", "complained_at")
    )
    if skip:
        window = window[skip:]
    counts = window.aggregate(
        handed_over=Count("pk", filter=_HANDED_OVER),
        hard_bounced=Count("pk", filter=Q(state=State.BOUNCED, bounce_class="hard")),
        complained=Count("pk", filter=_HANDED_OVER & Q(complained_at__isnull=False)),
        deferred=Count("pk", filter=Q(state=State.DEFERRED)),
    )
    return BatchRates(**counts, first_batch=first_batch, last_batch=last_batch)


def breaker_batch_rates(*, send: CampaignSend) -> BatchRates:
    """The rates of `send`'s current batch, or of the whole campaign so far when the batch
    is too small a sample on its own."""
    number = send.batch_number
    previous = breaker_batch_limit(batch_number=number - 1, total=send.deliveries_total)
    rates = _rates(
        campaign_id=send.campaign_id, skip=previous, first_batch=number, last_batch=number
    )
    if rates.handed_over < _min_sample() and previous:
        rates = _rates(campaign_id=send.campaign_id, skip=0, first_batch=1, last_batch=number)
    return rates


# --- the claim limit ----------------------------------------------------------------------


def _headroom(*, campaign_id: int, limit: int, total: int, enough: int) -> int:
    """limit - taken, counted on whichever side of the (campaign, state) index is shorter;
    at most `enough` (beyond that the exact figure does not matter)."""
    if limit >= total:
        return enough
    deliveries = Delivery.objects.filter(campaign_id=campaign_id).order_by()
    if limit <= total - limit + enough:
        taken = deliveries.filter(state__in=TAKEN_STATES)[:limit].count()
        return min(limit - taken, enough)
    bound = total - limit + enough
    untaken = deliveries.filter(state__in=UNTAKEN_STATES)[:bound].count()
    return min(limit - total + untaken, enough)


def _share(headroom: int, wanted: int) -> int:
    """What one check may take of a batch's headroom: concurrent chains of the campaign
    (SENDING_FANOUT of them) each see the same headroom."""
    chains = max(settings.SENDING_FANOUT, 1)
    return min(wanted, max(math.ceil(headroom / chains), 1)) if headroom > 0 else 0


def breaker_claim_limit(campaign_id: int, wanted: int) -> int:
    """The claim limit (sending.pipeline.claim_limits): what the open batch still allows,
    judging the batch and opening the next when it is over."""
    send = (
        CampaignSend.objects.filter(campaign_id=campaign_id)
        .only("is_paused", "batch_number", "batch_limit", "deliveries_total")
        .first()
    )
    if send is None or send.is_paused:
        return wanted  # nothing to shape: the claim itself finds nothing to take
    if send.batch_limit is None:
        send.batch_limit = breaker_batch_limit(batch_number=1, total=send.deliveries_total)
        CampaignSend.objects.filter(pk=send.pk, batch_limit__isnull=True).update(
            batch_number=1, batch_limit=send.batch_limit
        )
    if send.batch_limit >= send.deliveries_total:
        return wanted  # the last batch is open: nothing left to hold back
    enough = wanted * max(settings.SENDING_FANOUT, 1)
    headroom = _headroom(
        campaign_id=campaign_id,
        limit=send.batch_limit,
        total=send.deliveries_total,
        enough=enough,
    )
    if headroom > 0:
        return _share(headroom, wanted)
    if Delivery.objects.filter(
        campaign_id=campaign_id, state__in=[State.CLAIMED, State.IN_FLIGHT]
    ).exists():
        return 0  # the batch is still going out: judge it when all of it has come back
    opened = breaker_batch_close(campaign_id=campaign_id, batch_number=send.batch_number)
    if opened is None:
        return 0
    headroom = _headroom(
        campaign_id=campaign_id, limit=opened, total=send.deliveries_total, enough=enough
    )
    return _share(headroom, wanted)


@transaction.atomic
def breaker_batch_close(*, campaign_id: int, batch_number: int) -> int | None:
    """Judge batch `batch_number` once: pause the campaign (None), or open the next batch;
    the limit of the batch open now."""
    # Campaign before CampaignSend: the order campaign_pause and campaign_resume lock in.
    campaign = (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("workspace")
        .filter(pk=campaign_id)
        .first()
    )
    send = CampaignSend.objects.select_for_update().filter(campaign_id=campaign_id).first()
    if (
        campaign is None
        or send is None
        or campaign.status != Campaign.Status.SENDING
        or send.is_paused
    ):
        return None
    if send.batch_number != batch_number:
        return send.batch_limit  # judged by another worker while this one waited for the lock
    if Delivery.objects.filter(
        campaign_id=campaign_id, state__in=[State.CLAIMED, State.IN_FLIGHT]
    ).exists():
        return None
    rates = breaker_batch_rates(send=send)
    crossed = breaker_verdict(
        rates=rates, thresholds=breaker_thresholds(workspace_id=campaign.workspace_id)
    )
    if crossed:
        _trip(campaign=campaign, send=send, crossed=crossed)
        return None
    breaker_batch_open_next(send=send)
    send.save(update_fields=["batch_number", "batch_limit"])
    logger.info(
        "Campaign %s: batch %s passed (%s handed over); batch %s opens, up to %s",
        campaign_id, batch_number, rates.handed_over, send.batch_number, send.batch_limit,
    )  # fmt: skip
    return send.batch_limit


def _trip(*, campaign: Campaign, send: CampaignSend, crossed: list[str]) -> None:
    # imported here: sending.pipeline imports this module (campaign_resume opens a batch)
    from sending.pipeline import campaign_pause

    reason = ("Paused by the circuit breaker: " + "; ".join(crossed))[:300]
    campaign_pause(campaign=campaign, acting_user=None, reason=reason, by_breaker=True)
    logger.warning("Campaign %s: %s", campaign.pk, reason)
    breaker_owners_notify(campaign=campaign, reason=reason, batch_number=send.batch_number)


def breaker_owners_notify(*, campaign: Campaign, reason: str, batch_number: int) -> None:
    """Email each owner of the campaign's workspace (sent once the pause commits)."""
    owners = (
        Membership.objects.for_workspace(campaign.workspace)
        .filter(role=Role.OWNER, user__is_active=True)
        .values_list("user__email", flat=True)
    )
    path = reverse(
        "campaigns:campaign_review",
        kwargs={"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk},
    )
    for email in owners:
        templated_mail_send(
            template="sending/email/breaker_paused",
            to=[email],
            context={
                "campaign": campaign,
                "workspace": campaign.workspace,
                "reason": reason,
                "batch_number": batch_number,
                "path": path,
            },
        )
