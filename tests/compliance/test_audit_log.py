"""The audit log page: owners and admins read their workspace's entries, filtered."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import AuditEntry, Role
from compliance import audit_log
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def _url(workspace):
    return reverse("compliance_ws:audit_log", kwargs={"workspace_slug": workspace.slug})


def _entry(workspace, verb, actor=None, days_ago=0):
    entry = audit_record(workspace=workspace, actor=actor, verb=verb)
    if days_ago:  # created_at is set once; the test back-dates through the plain queryset
        from django.db.models import QuerySet

        QuerySet.update(
            AuditEntry.objects.filter(pk=entry.pk),
            created_at=timezone.now() - timedelta(days=days_ago),
        )
    return entry


@pytest.mark.parametrize(
    ("category", "verb"),
    [
        ("imports", "contacts.import_started"),
        ("exports", "contacts.exported"),
        ("exports", "gdpr.exported"),
        ("deletions", "contacts.deleted"),
        ("deletions", "sending_domain.removed"),
        ("suppressions", "suppression.added"),
        ("roles", "member.role_changed"),
        ("domains", "sending_domain.added"),
        ("erasures", "gdpr.erased"),
    ],
)
def test_each_listed_action_is_in_its_category(member_client, category, verb):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    _entry(workspace, verb)
    _entry(workspace, "segment.created")
    response = client.get(_url(workspace), {"category": category})
    assert response.status_code == 200
    assert verb.encode() in response.content
    assert b"segment.created" not in response.content


def test_filters_by_actor_and_dates_with_htmx_fragment(member_client):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.OWNER)
    _entry(workspace, "list.created", actor=client.user)
    _entry(workspace, "list.deleted", actor=None)
    _entry(workspace, "field.created", actor=client.user, days_ago=40)
    response = client.get(_url(workspace), {"actor": str(client.user.pk)},
                          headers={"HX-Request": "true"})  # fmt: skip
    assert b"<html" not in response.content  # the rows fragment only
    assert b"list.created" in response.content
    assert b"list.deleted" not in response.content
    system = client.get(_url(workspace), {"actor": "system"})
    assert b"list.deleted" in system.content
    assert b"list.created" not in system.content
    since = (timezone.now() - timedelta(days=10)).date().isoformat()
    recent = client.get(_url(workspace), {"from": since})
    assert b"list.created" in recent.content
    assert b"field.created" not in recent.content
    until = client.get(_url(workspace), {"to": since})
    assert b"field.created" in until.content
    assert b"list.created" not in until.content


def test_pages_by_keyset(member_client, monkeypatch):
    monkeypatch.setattr(audit_log, "PAGE_SIZE", 3)
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    for number in range(5):
        _entry(workspace, f"list.created{number}")
    first = audit_log.audit_entry_page(workspace=workspace, filters=audit_log.AuditFilters())
    second = audit_log.audit_entry_page(
        workspace=workspace, filters=audit_log.AuditFilters(), after=str(first.next_cursor)
    )
    assert len(first.entries) == 3
    assert second.next_cursor is None
    seen = [entry.pk for entry in first.entries + second.entries]
    assert len(set(seen)) == len(seen) >= 5
    response = client.get(_url(workspace), {"after": first.next_cursor})
    assert b"Newest" in response.content


def test_other_workspaces_entries_are_never_shown(member_client):
    workspace, other = WorkspaceFactory(), WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    _entry(other, "secret.thing")
    assert b"secret.thing" not in client.get(_url(workspace)).content


@pytest.mark.parametrize("role", [Role.EDITOR, Role.VIEWER])
def test_editors_and_viewers_cannot_read_it(member_client, role):
    workspace = WorkspaceFactory()
    assert member_client(workspace, role).get(_url(workspace)).status_code == 403


def test_settings_tabs_show_the_link_to_admins_only(member_client):
    workspace = WorkspaceFactory()
    settings_url = reverse("accounts:workspace_settings", kwargs={"workspace_slug": workspace.slug})
    admin_page = member_client(workspace, Role.ADMIN).get(settings_url)
    assert _url(workspace).encode() in admin_page.content
    viewer_page = member_client(workspace, Role.VIEWER).get(settings_url)
    assert _url(workspace).encode() not in viewer_page.content


def test_list_page_query_count_does_not_grow_with_entries(
    member_client, django_assert_max_num_queries
):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    for number in range(30):
        _entry(workspace, f"list.created{number}", actor=client.user)
    client.get(_url(workspace))
    with django_assert_max_num_queries(12):
        client.get(_url(workspace))
