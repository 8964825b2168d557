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


@shared_task(acks_late=True)
def pending_hits_drain_task() -> dict[str, int]:
    """Every few seconds: the opens and clicks the endpoints buffered become events and
    counters (tracking/ingest.py), until the buffer is empty or 20 s have passed (the
    next run goes on). One run at a time: the runs queued behind a long one end at once
    instead of taking every worker slot of the queue."""
    from accounts.locks import advisory_lock_try
    from tracking.ingest import pending_hits_drain_all

    with advisory_lock_try("tracking.pending_hits") as acquired:
        if not acquired:
            return {"hits": 0, "events": 0, "skipped": 1}
        taken, stored = pending_hits_drain_all(seconds=20)
    return {"hits": taken, "events": stored, "skipped": 0}


@shared_task(acks_late=True)
def ab_winners_task() -> list[int]:
    """Every minute: each A/B test whose wait is over gets its winner, and the rest of its
    audience is released with it (tracking/ab.py). Ids of the tests decided."""
    from django.utils import timezone

    from campaigns.models import AbTest
    from tracking.ab import ab_winner_pick, ab_winners_due

    now = timezone.now()
    decided = []
    for ab_test in AbTest.objects.filter(pk__in=ab_winners_due(now=now)).order_by("pk"):
        if ab_winner_pick(ab_test=ab_test, now=now) is not None:
            decided.append(ab_test.pk)
    return decided


@shared_task(acks_late=True)
def rollups_refresh_task() -> dict[str, int]:
    """Every minute: the report figures of campaigns whose facts changed, and the days of
    their workspaces. A run still going makes this one skip (both are idempotent)."""
    from django.utils import timezone

    from tracking.rollups import rollups_refresh

    return rollups_refresh(now=timezone.now())
