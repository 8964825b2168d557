"""The send pipeline: start due campaigns, send them chunk by chunk, pause, resume, cancel,
finish, and report progress.

A chunk is claimed under a lease (sending/services/deliveries.py), built into envelopes
(sending/message.py), marked in flight in a committed transaction, handed to the pool's
transport in one call, and its outcomes recorded in one transaction. No lock is held while
the transport talks to the network; a worker that dies anywhere in between leaves rows the
lease sweep sorts out. Celery tasks (sending/tasks.py) only call these functions.
"""

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User
from campaigns.models import Campaign
from campaigns.scheduling import campaign_list_due
from contacts.models import Contact
from sending.breaker import breaker_batch_open_next
from sending.message import BuildError, CampaignMessageBuilder
from sending.models import CampaignSend, Delivery, IpPool, WorkspacePool
from sending.policy import campaign_awaits_approval
from sending.services.deliveries import (
    Claim,
    Outcome,
    deliveries_claim,
    deliveries_fail_unsent,
    deliveries_mark_in_flight,
    deliveries_record,
    deliveries_return_unsent,
    send_start,
)
from sending.services.feedback import hard_bounce_apply, smtp_outcomes_record
from sending.shaping import (
    LONG_WAIT_SECONDS,
    Grant,
    Refusal,
    chain_waiting,
    grant_finish,
    grant_release,
    lane_grant,
)
from sending.transports import transport_for
from sending.transports.base import Envelope, Result, TransportConfigError

logger = logging.getLogger(__name__)

State = Delivery.State
# States after which a delivery will produce no more mail.
_OPEN = [State.QUEUED, State.CLAIMED, State.IN_FLIGHT, State.DEFERRED, State.HOLDING]


@dataclass
class ChunkReport:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    lost_lease: int = 0
    throttled: bool = False  # a claim limit allowed nothing now: try again shortly
    # When to try again (seconds); None: not worth waiting for in this chain (a warm-up
    # cap, a held provider, a pool bound on other hosts): the chain ends, the sweep or the
    # other hosts' workers carry on.
    retry_after: float | None = 1.0

    def count(self, state: str) -> None:
        self.outcomes[state] = self.outcomes.get(state, 0) + 1


# The one place where traffic shaping (warm-up caps, per-destination rates, quotas, the
# kill switch) answers "how many may I take now": each limit gets the campaign id and the
# number wanted and returns how many it allows (0: none now). Registered at start-up.
ClaimLimit = Callable[[int, int], int]
claim_limits: list[ClaimLimit] = []


def claim_allowance(*, campaign_id: int, wanted: int) -> int:
    allowed = wanted
    for limit in claim_limits:
        allowed = min(allowed, max(limit(campaign_id, allowed), 0))
        if not allowed:
            break
    return allowed


# --- starting ---------------------------------------------------------------------------


def campaigns_start_due(*, now: dt.datetime | None = None) -> list[int]:
    """Snapshot every scheduled campaign whose time has come; the ids started."""
    started = []
    for campaign in campaign_list_due(now=now or timezone.now()):
        if campaign_awaits_approval(campaign=campaign):
            continue  # stays scheduled; starts on the scan after an operator approves it
        try:
            send_start(campaign=campaign)
        except ApplicationError as error:
            logger.warning("Campaign %s did not start: %s", campaign.pk, error.message)
            continue
        started.append(campaign.pk)
    return started


def campaign_pool(campaign: Campaign) -> IpPool | None:
    """The workspace's assigned pool, else the platform's default pool (None: no pools)."""
    assignment = WorkspacePool.objects.filter(workspace_id=campaign.workspace_id).first()
    if assignment is not None:
        return assignment.pool
    return IpPool.objects.filter(is_default=True).first()


# --- sending a chunk ----------------------------------------------------------------------

_builders: dict[tuple[int, dt.datetime], CampaignMessageBuilder] = {}


def _builder(campaign: Campaign) -> CampaignMessageBuilder:
    """One builder per campaign per process (compiled once), rebuilt if the campaign changed.

    The builder points tracked links at the sending domain's tracking host once its CNAME
    passed, else at BASE_URL (sending.message.tracking_base_url)."""
    key = (campaign.pk, campaign.updated_at)
    builder = _builders.get(key)
    if builder is None:
        _builders.clear()  # one campaign at a time per worker is the common case
        builder = CampaignMessageBuilder(campaign)
        _builders[key] = builder
    return builder


def _outcome(result: Result, transport_name: str) -> Outcome:
    return Outcome(
        state=result.state,
        transport=transport_name,
        remote_host=result.remote_host,
        smtp_code=result.smtp_code,
        enhanced_code=result.enhanced_code,
        response=result.response,
        bounce_class=result.bounce_class,
    )


def chunk_send(*, campaign_id: int, limit: int | None = None) -> ChunkReport | None:
    """Claim, build, hand over and record one chunk of a campaign; None when nothing was
    claimable (finished, paused, or only deferred rows not yet due)."""
    limit = claim_allowance(campaign_id=campaign_id, wanted=limit or settings.SENDING_CHUNK_SIZE)
    if not limit:
        return ChunkReport(throttled=True)
    campaign = Campaign.objects.select_related("workspace", "template").get(pk=campaign_id)
    try:
        # Before any room is taken: the time between a grant and the wire stays short.
        builder = _builder(campaign)
    except BuildError as error:
        # The campaign itself cannot be built (its domain lost verification, a template
        # that no longer compiles): pause, with the reason shown; nothing was claimed.
        with contextlib.suppress(ApplicationError):  # another chain paused it already
            campaign_pause(campaign=campaign, acting_user=None, reason=str(error))
        return None
    pool = campaign_pool(campaign)
    grant = lane_grant(campaign=campaign, pool=pool, wanted=limit)
    if isinstance(grant, Refusal):
        if grant.reason == "nothing claimable":
            return None
        wait = grant.wait_seconds
        return ChunkReport(throttled=True, retry_after=wait if wait < LONG_WAIT_SECONDS else None)
    try:
        return _grant_send(campaign=campaign, builder=builder, pool=pool, grant=grant)
    finally:
        grant_release(grant)


def _grant_send(
    *, campaign: Campaign, builder: CampaignMessageBuilder, pool: IpPool | None, grant: Grant
) -> ChunkReport | None:
    claim = deliveries_claim(
        campaign_id=campaign.pk,
        limit=grant.count,
        provider=grant.provider,
        source_ip=grant.source_ip,
        engaged_first=grant.engaged_first,
    )
    if claim is None:
        grant.give_back(grant.count)
        return None
    report = ChunkReport(claimed=len(claim.deliveries))
    if not claim.deliveries:
        grant.give_back(grant.count)
        return report
    envelopes: dict[int, Envelope] = {}
    failures: list[tuple[Delivery, str]] = []
    for delivery in claim.deliveries:
        try:
            envelope = builder.build(
                delivery_id=delivery.pk,
                contact=delivery.contact,
                variant=delivery.variant,
                address=delivery.address,
                message_id=delivery.message_id,
            )
        except BuildError as error:
            failures.append((delivery, str(error)))
            continue
        if grant.source_ip:
            envelope = replace(
                envelope,
                source_address=grant.source_ip,
                max_sessions=len(grant.slots),
                messages_per_session=grant.messages_per_session,
            )
        envelopes[delivery.pk] = envelope
    if failures:
        deliveries_fail_unsent(token=claim.token, failures=failures)
        for _ in failures:
            report.count(State.FAILED)

    in_flight = deliveries_mark_in_flight(
        delivery_ids=list(envelopes),
        token=claim.token,
        message_ids={pk: envelope.message_id for pk, envelope in envelopes.items()},
    )
    report.lost_lease = len(envelopes) - len(in_flight)
    grant.give_back(grant.count - len(in_flight))
    if not in_flight:
        return report
    try:
        transport = transport_for(pool)
        results = transport.send_many([envelopes[pk] for pk in sorted(in_flight)])
    except TransportConfigError as error:
        # Nothing was handed over: the rows wait in the queue while an operator fixes the
        # transport, and the campaign pauses with the reason.
        grant.give_back(grant.count)
        deliveries_return_unsent(delivery_ids=list(in_flight), token=claim.token)
        logger.error("Campaign %s paused: transport refused: %s", campaign.pk, error)
        campaign_pause(campaign=campaign, acting_user=None, reason=f"Transport: {error}")
        return report
    grant_finish(grant, results)

    by_id = {delivery.pk: delivery for delivery in claim.deliveries}
    outcomes = [(by_id[r.delivery_id], _outcome(r, transport.name)) for r in results]
    recorded = _record_through_outage(claim=claim, outcomes=outcomes)
    for delivery, outcome in outcomes:
        if delivery.pk in recorded:
            report.count(outcome.state)
    _after_outcomes([(d, o) for d, o in outcomes if d.pk in recorded], campaign)
    return report


def _record_through_outage(*, claim: Claim, outcomes: list[tuple[Delivery, Outcome]]) -> set[int]:
    """Record the outcomes of mail already handed over, retrying through a lost database
    connection (a restart, a fail-over) while the lease lasts: rows left in flight would
    become `unknown` at the sweep although the relay took them. Recording is a
    compare-and-set on the lease, so a retry after a commit whose reply was lost writes
    nothing twice."""
    pause = 0.1
    while True:
        try:
            return deliveries_record(token=claim.token, outcomes=outcomes)
        except (OperationalError, InterfaceError) as error:
            connection.close()  # the next query connects afresh
            if timezone.now() + dt.timedelta(seconds=pause) >= claim.expires_at:
                raise
            logger.warning("Recording %s outcomes again: %s", len(outcomes), error)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _after_outcomes(outcomes: list[tuple[Delivery, Outcome]], campaign: Campaign) -> None:
    """Facts other apps read: last_sent_at on contacts; refusals in the session become
    feedback events (soft ones counted by the soft-bounce rule); hard bounces suppress."""
    now = timezone.now()
    sent_contacts = [d.contact_id for d, o in outcomes if o.state == State.SENT and d.contact_id]
    if sent_contacts:
        Contact.objects.filter(pk__in=sent_contacts).update(last_sent_at=now)
    for delivery, outcome in outcomes:
        if outcome.state == State.BOUNCED and outcome.bounce_class == "hard":
            hard_bounce_apply(
                workspace=campaign.workspace,
                delivery=delivery,
                source=f"{campaign.name}: {outcome.smtp_code or ''} {outcome.response}",
            )
    smtp_outcomes_record(campaign=campaign, outcomes=outcomes)


# --- finishing and controls ---------------------------------------------------------------


def campaign_finish_if_done(*, campaign_id: int) -> bool:
    """A sending campaign with no delivery left that may still produce mail is sent."""
    if Delivery.objects.filter(campaign_id=campaign_id, state__in=_OPEN).exists():
        return False
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update(of=("self",)).filter(pk=campaign_id).first()
        if campaign is None or campaign.status != Campaign.Status.SENDING:
            return False
        campaign.status = Campaign.Status.SENT
        campaign.updated_at = timezone.now()
        campaign.save(update_fields=["status", "updated_at"])
        CampaignSend.objects.filter(campaign_id=campaign_id).update(finished_at=timezone.now())
    return True


def _locked_send(campaign: Campaign) -> tuple[Campaign, CampaignSend]:
    locked = Campaign.objects.select_for_update(of=("self",)).get(pk=campaign.pk)
    send = CampaignSend.objects.select_for_update().filter(campaign=locked).first()
    if send is None:
        raise ApplicationError("This campaign has not started sending.")
    return locked, send


@transaction.atomic
def campaign_pause(
    *, campaign: Campaign, acting_user: User | None, reason: str = "", by_breaker: bool = False
) -> None:
    """Stop new claims at once; chunks already handed over finish. The reason is shown on
    the campaign's page; `by_breaker`: the batch circuit breaker paused it."""
    locked, send = _locked_send(campaign)
    if locked.status != Campaign.Status.SENDING:
        raise ApplicationError("Only a sending campaign can be paused.")
    send.is_paused = True
    send.pause_reason = reason[:300]
    send.paused_by_breaker = by_breaker
    send.save(update_fields=["is_paused", "pause_reason", "paused_by_breaker"])
    locked.status = Campaign.Status.PAUSED
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "updated_at"])
    details = {"reason": reason} if reason else {}
    if by_breaker:
        details["by_breaker"] = True
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="campaign.paused",
        target=locked,
        details=details or None,
    )


@transaction.atomic
def campaign_resume(*, campaign: Campaign, acting_user: User | None) -> None:
    locked, send = _locked_send(campaign)
    if locked.status != Campaign.Status.PAUSED:
        raise ApplicationError("Only a paused campaign can be resumed.")
    if send.paused_by_breaker:
        # Someone has looked at the breaker's reason: the batch it judged is not judged
        # again, the next one opens.
        breaker_batch_open_next(send=send)
    send.is_paused = False
    send.pause_reason = ""
    send.paused_by_breaker = False
    fields = ["is_paused", "pause_reason", "paused_by_breaker", "batch_number", "batch_limit"]
    send.save(update_fields=fields)
    locked.status = Campaign.Status.SENDING
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "updated_at"])
    audit_record(
        workspace=locked.workspace, actor=acting_user, verb="campaign.resumed", target=locked
    )


@transaction.atomic
def campaign_stop(*, campaign: Campaign, acting_user: User | None) -> int:
    """Cancel a sending or paused campaign: what has not been handed over is skipped."""
    locked, send = _locked_send(campaign)
    if locked.status not in (Campaign.Status.SENDING, Campaign.Status.PAUSED):
        raise ApplicationError("Only a sending or paused campaign can be stopped.")
    skipped = Delivery.objects.filter(
        campaign=locked, state__in=[State.QUEUED, State.DEFERRED, State.HOLDING]
    ).update(state=State.SKIPPED, skip_reason="Campaign cancelled.", updated_at=timezone.now())
    send.is_paused = True
    send.finished_at = timezone.now()
    send.save(update_fields=["is_paused", "finished_at"])
    locked.status = Campaign.Status.CANCELLED
    locked.updated_at = timezone.now()
    locked.save(update_fields=["status", "updated_at"])
    audit_record(
        workspace=locked.workspace,
        actor=acting_user,
        verb="campaign.stopped",
        target=locked,
        details={"skipped": skipped},
    )
    return skipped


# --- progress -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    total: int
    by_state: dict[str, int]
    done: int
    per_minute: int
    eta_seconds: int | None
    next_retry_at: dt.datetime | None
    first_sent_at: dt.datetime | None
    last_sent_at: dt.datetime | None

    @property
    def percent(self) -> int:
        return int(self.done * 100 / self.total) if self.total else 100

    @property
    def sending_now(self) -> int:
        return self.by_state.get(State.CLAIMED, 0) + self.by_state.get(State.IN_FLIGHT, 0)


def campaign_progress(*, campaign: Campaign) -> Progress:
    """Counts by state, the rate over the last minute and the time left at that rate."""
    deliveries = Delivery.objects.filter(campaign=campaign)
    by_state = dict(
        deliveries.order_by().values_list("state").annotate(n=Count("id")).values_list("state", "n")
    )
    total = sum(by_state.values())
    waiting = sum(by_state.get(state, 0) for state in (State.QUEUED, State.CLAIMED, State.DEFERRED))
    done = total - waiting - by_state.get(State.IN_FLIGHT, 0) - by_state.get(State.HOLDING, 0)
    since = timezone.now() - dt.timedelta(minutes=1)
    per_minute = deliveries.filter(sent_at__gte=since).count()
    times = deliveries.aggregate(first=Min("sent_at"), last=Max("sent_at"))
    next_retry = (
        deliveries.filter(state=State.DEFERRED).aggregate(at=Min("next_attempt_at"))["at"]
        if by_state.get(State.DEFERRED)
        else None
    )
    eta = int(waiting * 60 / per_minute) if per_minute and waiting else None
    return Progress(
        total=total,
        by_state=by_state,
        done=done,
        per_minute=per_minute,
        eta_seconds=eta,
        next_retry_at=next_retry,
        first_sent_at=times["first"],
        last_sent_at=times["last"],
    )


def campaigns_needing_workers() -> tuple[list[int], list[int]]:
    """(campaigns with claimable rows and no delivery touched for a sweep interval,
    sending campaigns with nothing open left). The sweep restarts the first and finishes
    the second, so a send completes after any crash without a manual step."""
    now = timezone.now()
    quiet_since = now - dt.timedelta(seconds=settings.DELIVERY_SWEEP_SECONDS)
    sending = list(
        Campaign.objects.filter(status=Campaign.Status.SENDING).values_list("pk", flat=True)
    )
    stalled, finished = [], []
    for campaign_id in sending:
        deliveries = Delivery.objects.filter(campaign_id=campaign_id)
        open_rows = deliveries.filter(state__in=_OPEN)
        if not open_rows.exists():
            finished.append(campaign_id)
            continue
        claimable = (
            deliveries.filter(state=State.QUEUED).exists()
            or deliveries.filter(state=State.DEFERRED, next_attempt_at__lte=now).exists()
        )
        busy = deliveries.filter(updated_at__gte=quiet_since).exists() or chain_waiting(
            campaign_id=campaign_id
        )
        if claimable and not busy:
            stalled.append(campaign_id)
    return stalled, finished
