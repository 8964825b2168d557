"""Celery entry points of the tracking app."""

from celery import shared_task

from tracking.partitions import event_partitions_ensure, event_partitions_expire


@shared_task(acks_late=True)
def tracking_partitions_task() -> dict[str, list[str]]:
    """Daily: the event table's coming months' partitions exist before their events
    arrive, and the months past the retention are dropped. Both steps are idempotent."""
    created = event_partitions_ensure()
    dropped = event_partitions_expire()
    return {"created": created, "dropped": dropped}
