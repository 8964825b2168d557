"""Celery entry points of the contacts app: ids in, one service call each."""

from celery import shared_task

# --- Exports ---------------------------------------------------------------------------


@shared_task(acks_late=True)
def contact_export_run_task(export_id: int) -> None:
    # Imported here: contacts.services.exports imports this module to queue the task.
    from contacts.services.exports import contact_export_run

    contact_export_run(export_id=export_id)


# --- Imports ---------------------------------------------------------------------------


@shared_task(acks_late=True)
def contact_import_run_task(import_id: int) -> None:
    # Imported here: contacts.services.imports imports this module to queue the task.
    from contacts.services.import_run import contact_import_run

    contact_import_run(import_id=import_id)
