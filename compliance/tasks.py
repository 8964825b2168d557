"""Celery entry points of the compliance app: ids in, one service call each."""

from celery import shared_task


@shared_task(acks_late=True)
def gdpr_request_run_task(request_id: int) -> None:
    # Imported here: compliance.gdpr_requests imports this module to queue the task.
    from compliance.gdpr_requests import gdpr_request_run

    gdpr_request_run(request_id=request_id)


@shared_task(acks_late=True)
def gdpr_retention_apply_task() -> None:
    from compliance.gdpr import gdpr_retention_apply

    gdpr_retention_apply()
