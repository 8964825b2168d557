"""Celery entry points of the sending app: ids in, one service call."""

from celery import shared_task
from django.conf import settings
from django.db import transaction


@shared_task(acks_late=True)
def sending_domain_check_due_task() -> int:
    """Periodic sweep: enqueue a check of every domain that is due (if DNS checks are on)."""
    if not settings.DNS_CHECKS_ENABLED:
        return 0
    from sending.services.domains import sending_domain_ids_due

    ids = sending_domain_ids_due()
    for domain_id in ids:
        transaction.on_commit(
            lambda domain_id=domain_id: sending_domain_check_task.delay(domain_id)
        )
    return len(ids)


@shared_task(acks_late=True, bind=True, max_retries=3)
def sending_domain_check_task(self, domain_id: int) -> str | None:
    """Check one domain; a check with 'unknown' records (DNS trouble) is retried later."""
    from sending.models import DomainCheck, SendingDomain
    from sending.services.domains import sending_domain_check, sending_domain_has_unknown

    domain = SendingDomain.objects.filter(pk=domain_id).first()
    if domain is None:
        return None
    check = sending_domain_check(domain=domain, trigger=DomainCheck.Trigger.PERIODIC)
    if sending_domain_has_unknown(check=check) and self.request.retries < self.max_retries:
        raise self.retry(countdown=60 * 2**self.request.retries)
    return check.status_after


@shared_task(acks_late=True)
def dnsbl_check_all_task() -> int:
    if not settings.DNS_CHECKS_ENABLED:
        return 0
    from sending.services.monitoring import dnsbl_check_all

    return len(dnsbl_check_all())


@shared_task(acks_late=True)
def sending_ip_ptr_check_all_task() -> int:
    if not settings.DNS_CHECKS_ENABLED:
        return 0
    from sending.services.monitoring import sending_ip_ptr_check_all

    return sending_ip_ptr_check_all()


@shared_task(acks_late=True)
def campaigns_start_due_task() -> list[int]:
    """Periodic: snapshot the campaigns whose time has come and set workers on them."""
    from sending.pipeline import campaigns_start_due

    started = campaigns_start_due()
    for campaign_id in started:
        campaign_send_fan_out(campaign_id)
    return started


def campaign_send_fan_out(campaign_id: int) -> None:
    """SENDING_FANOUT chains of send tasks per campaign and per host that holds IPs of its
    pool (sending/hosts.py): each chain re-enqueues itself on its host's queue."""
    from campaigns.models import Campaign
    from sending.pipeline import campaign_pool
    from sending.shaping import send_hosts

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        return
    for host in send_hosts(campaign_pool(campaign)):
        for _ in range(settings.SENDING_FANOUT):
            transaction.on_commit(lambda host=host: _send_enqueue(campaign_id, host))


def _send_enqueue(campaign_id: int, host: str, countdown: float | None = None) -> None:
    from kombu import Queue

    from sending.hosts import host_queue

    queue = host_queue(host)
    campaign_send_task.apply_async(
        (campaign_id, host), countdown=countdown, queue=Queue(queue), routing_key=queue
    )


@shared_task(acks_late=True)
def campaign_send_task(campaign_id: int, host: str = "") -> int:
    """Send chunks for about SENDING_TASK_SECONDS, then hand over to a fresh task, so that a
    worker is never tied to one campaign for long. Returns the deliveries claimed."""
    import time

    from sending.pipeline import campaign_finish_if_done, chunk_send
    from sending.shaping import chain_touch

    deadline = time.monotonic() + settings.SENDING_TASK_SECONDS
    claimed = 0
    while time.monotonic() < deadline:
        report = chunk_send(campaign_id=campaign_id)
        if report is None:
            campaign_finish_if_done(campaign_id=campaign_id)
            return claimed
        if report.throttled:
            if report.retry_after is None:  # capped for today, held, or another host's
                return claimed
            # No room now: come back when the window has some.
            wait = max(report.retry_after, 0.2)
            chain_touch(campaign_id=campaign_id, seconds=wait + 5)
            _send_enqueue(campaign_id, host, countdown=wait)
            return claimed
        claimed += report.claimed
    _send_enqueue(campaign_id, host)
    return claimed


@shared_task(acks_late=True)
def deliveries_sweep_task() -> dict:
    """Periodic: expired leases back to the queue (or unknown), and campaigns that have
    claimable work but no worker on it (a lost queue, a restart) set going again."""
    from sending.pipeline import campaign_finish_if_done, campaigns_needing_workers
    from sending.services.deliveries import leases_sweep

    swept = leases_sweep()
    stalled, finished = campaigns_needing_workers()
    for campaign_id in stalled:
        campaign_send_fan_out(campaign_id)
    for campaign_id in finished:
        campaign_finish_if_done(campaign_id=campaign_id)
    return {**swept, "restarted": len(stalled)}


@shared_task(acks_late=True)
def workspaces_complaints_check_task() -> list[int]:
    """Periodic: suspend the sending of workspaces whose 7-day complaint rate is too high."""
    from sending.services.policy import workspaces_complaints_check

    return workspaces_complaints_check()


@shared_task(acks_late=True)
def warmup_graduate_task() -> dict[str, int]:
    """Daily: warming IPs and new domains past the end of their ramp become active."""
    from django.utils import timezone

    from sending.warmup import warmup_graduate

    return warmup_graduate(timezone.localdate())


@shared_task(acks_late=True)
def inbound_process_task(inbound_id: int) -> str:
    """Read one stored inbound message and act on it (bounce, complaint, unsubscribe)."""
    from sending.services.inbound import inbound_process

    inbound = inbound_process(inbound_id=inbound_id)
    return inbound.status if inbound is not None else "missing"


@shared_task(acks_late=True)
def inbound_sweep_task() -> int:
    """Periodic: received inbound messages whose next_attempt_at has come (a lost
    enqueue, a killed worker, a bounce whose delivery was in flight) go to a task again."""
    from sending.services.inbound import inbound_sweep

    return inbound_sweep()
