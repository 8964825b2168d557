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
