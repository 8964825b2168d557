"""Periodic checks: off unless DNS_CHECKS_ENABLED; due domains checked; DNS trouble retried."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sending.models import DnsblZone, DomainCheck, SendingDomain
from sending.services.domains import sending_domain_add, sending_domain_ids_due
from sending.tasks import (
    dnsbl_check_all_task,
    sending_domain_check_due_task,
    sending_domain_check_task,
)
from tests.factories import WorkspaceFactory
from tests.sending.conftest import publish

pytestmark = pytest.mark.django_db


def test_periodic_checks_query_nothing_unless_enabled(dns_server, settings):
    assert settings.DNS_CHECKS_ENABLED is False
    sending_domain_add(workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None)
    DnsblZone.objects.update(is_enabled=True)
    assert sending_domain_check_due_task.apply().get() == 0
    assert dnsbl_check_all_task.apply().get() == 0
    assert dns_server.queries == []


def test_due_domains_are_those_not_checked_within_the_interval(settings):
    settings.DOMAIN_CHECK_INTERVAL_SECONDS = 3600
    workspace = WorkspaceFactory()
    never = sending_domain_add(workspace=workspace, domain="a.example.com", acting_user=None)
    old = sending_domain_add(workspace=workspace, domain="b.example.com", acting_user=None)
    fresh = sending_domain_add(workspace=workspace, domain="c.example.com", acting_user=None)
    now = timezone.now()
    SendingDomain.objects.filter(pk=old.pk).update(last_checked_at=now - timedelta(hours=2))
    SendingDomain.objects.filter(pk=fresh.pk).update(last_checked_at=now - timedelta(minutes=5))
    assert set(sending_domain_ids_due(now=now)) == {old.pk, never.pk}


def test_enabled_sweep_enqueues_checks_of_due_domains(
    dns_server, settings, django_capture_on_commit_callbacks
):
    settings.DNS_CHECKS_ENABLED = True
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from espsite.celery import app

    was_eager, app.conf.task_always_eager = app.conf.task_always_eager, True
    try:
        domain = sending_domain_add(
            workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
        )
        publish(dns_server, domain)
        with django_capture_on_commit_callbacks(execute=True):
            assert sending_domain_check_due_task.apply().get() == 1
    finally:
        app.conf.task_always_eager = was_eager
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    assert domain.checks.get().trigger == DomainCheck.Trigger.PERIODIC


def test_check_with_unknown_records_is_retried_by_the_task(dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    publish(dns_server, domain)
    # SERVFAIL on both attempts of the first check (DNS_RETRIES=1), then answers.
    dns_server.fail_first[f"_dmarc.{domain.domain}"] = 2
    result = sending_domain_check_task.apply(args=[domain.pk])
    assert result.get() == "verified"
    checks = list(domain.checks.order_by("checked_at", "id"))
    assert [c.results["dmarc"]["state"] for c in checks] == ["unknown", "pass"]
    assert [c.status_after for c in checks] == ["pending", "verified"]
