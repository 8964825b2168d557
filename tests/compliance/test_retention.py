"""Retention: rows older than RETENTION_MONTHS lose their personal fields, daily."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from compliance.gdpr import gdpr_retention_apply, months_before
from compliance.models import GdprRequest
from contacts.models import ContactImport, ImportRejection
from espsite.celery import app
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def _rejection(workspace, created_at):
    contact_import = ContactImport.objects.create(
        workspace=workspace,
        file_name="x.csv",
        original_name="x.csv",
        encoding="utf-8",
        delimiter=",",
        created_at=created_at,
    )
    return ImportRejection.objects.create(
        workspace=workspace,
        contact_import=contact_import,
        line=2,
        kind="invalid",
        reason="not an address",
        raw="old.person@example.com,Old",
    )


def test_old_rows_lose_personal_fields_recent_ones_keep_them(settings):
    settings.RETENTION_MONTHS = 6
    workspace = WorkspaceFactory()
    now = timezone.now()
    old = _rejection(workspace, now - timedelta(days=200))
    recent = _rejection(workspace, now - timedelta(days=30))
    old_request = GdprRequest.objects.create(
        workspace=workspace, kind="export", email="old.person@example.com", requester="person",
        status="done", finished_at=now - timedelta(days=200),
    )  # fmt: skip
    counts = gdpr_retention_apply(now=now)
    assert counts["contacts"] == 1
    assert counts["compliance"] == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    old_request.refresh_from_db()
    assert (old.raw, old.reason, old.line) == ("", "not an address", 2)
    assert recent.raw == "old.person@example.com,Old"
    assert old_request.email == ""
    assert gdpr_retention_apply(now=now)["contacts"] == 0  # idempotent


def test_months_before_is_calendar_months():
    assert months_before(datetime(2025, 3, 31, tzinfo=UTC), 1) == datetime(2025, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2025, 1, 15, tzinfo=UTC), 24) == datetime(2023, 1, 15, tzinfo=UTC)


def test_retention_runs_from_beat():
    entries = [entry["task"] for entry in app.conf.beat_schedule.values()]
    assert "compliance.tasks.gdpr_retention_apply_task" in entries
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    assert "compliance.tasks.gdpr_retention_apply_task" in app.tasks
