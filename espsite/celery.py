"""The Celery app: JSON only, late acks, queues named for their work, beat in one place."""

import os
import time

from celery import Celery, signals
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")

app = Celery("espsite")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("default", "transactional", "send", "tracking")

app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    result_expires=24 * 3600,
    # A task is acknowledged only once it has run; one whose worker dies comes back.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    # Mail a person waits for (confirmations, resets, invitations) never queues behind bulk work.
    task_routes={
        "accounts.tasks.system_mail_send_task": {"queue": "transactional"},
        "sending.tasks.campaign_send_task": {"queue": "send"},
        "tracking.tasks.pending_hits_drain_task": {"queue": "tracking"},
    },
    task_create_missing_queues=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
)


@app.on_after_configure.connect
def _apply_django_limits(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    # Redelivery after the visibility timeout must never race a task that is still
    # running, so the timeout outlives the hard time limit.
    sender.conf.broker_transport_options = {
        "visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT,
    }
    sender.conf.result_backend_transport_options = {
        "visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT,
    }
    sender.conf.task_time_limit = settings.CELERY_TASK_HARD_TIME_LIMIT
    sender.conf.task_soft_time_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    sender.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER
    sender.conf.beat_schedule["deliveries-sweep"]["schedule"] = float(
        settings.DELIVERY_SWEEP_SECONDS
    )
    sender.conf.beat_schedule["inbound-sweep"]["schedule"] = float(settings.INBOUND_SWEEP_SECONDS)


# Every periodic task of the platform, declared here and nowhere else.
app.conf.beat_schedule = {
    "campaigns-start-due": {
        "task": "sending.tasks.campaigns_start_due_task",
        "schedule": 10.0,
    },
    "deliveries-sweep": {
        "task": "sending.tasks.deliveries_sweep_task",
        "schedule": 60.0,  # DELIVERY_SWEEP_SECONDS, applied below
    },
    # Inbound mail (bounces, complaints) stored but not processed: handed to a task again.
    "inbound-sweep": {
        "task": "sending.tasks.inbound_sweep_task",
        "schedule": 60.0,  # INBOUND_SWEEP_SECONDS, applied below
    },
    # Workspaces whose recipients complain too much stop sending (also checked on each
    # complaint as it arrives).
    "sending-complaints-check": {
        "task": "sending.tasks.workspaces_complaints_check_task",
        "schedule": 3600.0,
    },
    # Warming IPs and new sending domains past the end of their ramp become active.
    "sending-warmup-graduate": {
        "task": "sending.tasks.warmup_graduate_task",
        "schedule": 24 * 3600.0,
    },
    "worker-heartbeat-cleanup": {
        "task": "espsite.tasks.heartbeat_prune_task",
        "schedule": 300.0,
    },
    # DNS checks of sending domains, blocklists and PTR: each does nothing unless
    # DNS_CHECKS_ENABLED, so a demo machine queries no DNS.
    "sending-domain-checks": {
        "task": "sending.tasks.sending_domain_check_due_task",
        "schedule": 900.0,
    },
    "sending-dnsbl-checks": {
        "task": "sending.tasks.dnsbl_check_all_task",
        "schedule": 3600.0,
    },
    # GDPR retention: personal fields of rows older than RETENTION_MONTHS go, daily.
    "gdpr-retention": {
        "task": "compliance.tasks.gdpr_retention_apply_task",
        "schedule": 24 * 3600.0,
    },
    "sending-ptr-checks": {
        "task": "sending.tasks.sending_ip_ptr_check_all_task",
        "schedule": 6 * 3600.0,
    },
    # The tracking event table's monthly partitions: the coming months created ahead
    # (TRACKING_PARTITIONS_AHEAD), those past TRACKING_EVENT_RETENTION_DAYS dropped.
    "tracking-partitions": {
        "task": "tracking.tasks.tracking_partitions_task",
        "schedule": 24 * 3600.0,
    },
    # Opens and clicks buffered by the endpoints become events and counters: seconds
    # behind the requests in the reports.
    "tracking-pending-hits": {
        "task": "tracking.tasks.pending_hits_drain_task",
        "schedule": 2.0,
    },
    # A/B tests whose wait is over: the winner is picked and the held audience released.
    "tracking-ab-winners": {
        "task": "tracking.tasks.ab_winners_task",
        "schedule": 60.0,
    },
    # Report figures (tracking/rollups.py): campaigns whose deliveries, feedback,
    # unsubscribes or opens and clicks changed, and their workspaces' days.
    "tracking-rollups": {
        "task": "tracking.tasks.rollups_refresh_task",
        "schedule": 60.0,
    },
}

app.autodiscover_tasks()
app.autodiscover_tasks(["espsite"])


_worker_name: str | None = None


@signals.celeryd_after_setup.connect
def _remember_worker_name(sender: str, instance, **kwargs) -> None:
    global _worker_name
    _worker_name = sender


@signals.heartbeat_sent.connect
def _publish_heartbeat(sender, **kwargs) -> None:
    """Record the worker as alive in Redis; /healthz reads these stamps."""
    from espsite.health import heartbeat_record

    heartbeat_record(worker=_worker_name or f"worker@{os.getpid()}", at=time.time())


@signals.celeryd_after_setup.connect
def _consume_this_hosts_send_queue(sender: str, instance, **kwargs) -> None:
    """A worker of the "send" queue also takes this host's queue (send.<host>): claims for
    the sending IPs bound on this host, which workers elsewhere cannot send from."""
    from sending.hosts import SEND_QUEUE, host_name, host_queue

    queues = instance.app.amqp.queues
    name = host_queue(host_name())
    if SEND_QUEUE in queues.consume_from and name != SEND_QUEUE:
        # Declared here, as task_create_missing_queues is off: producers route to another
        # host's queue with a Queue object (see sending/hosts.py).
        queues.select_add(Queue(name))


@signals.worker_ready.connect
def _publish_host_addresses(sender, **kwargs) -> None:
    """This host's addresses in Redis, now and on the worker's timer, so that the admin on
    any host can check a sending IP's bound_host (sending/hosts.py)."""
    from sending.hosts import HOST_ADDRESSES_REFRESH_SECONDS

    _host_addresses_publish_logged()
    sender.timer.call_repeatedly(HOST_ADDRESSES_REFRESH_SECONDS, _host_addresses_publish_logged)


def _host_addresses_publish_logged() -> None:
    import logging

    import redis

    from sending.hosts import host_addresses_publish

    try:
        host_addresses_publish()
    except redis.RedisError:
        logging.getLogger(__name__).warning("Could not publish this host's addresses in Redis.")
