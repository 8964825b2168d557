"""Contact exports: the worker's CSV, formula neutralisation, the private download."""

import csv
import io

import pytest
from django.urls import reverse

from accounts.models import AuditEntry, Role
from contacts.models import ContactExport
from contacts.services.exports import contact_export_request, contact_export_run, csv_cell
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    FieldFactory,
    SubscriptionFactory,
    UserFactory,
    WorkspaceFactory,
)
from tests.isolation import assert_workspace_isolated

pytestmark = pytest.mark.django_db


@pytest.fixture
def workspace():
    return WorkspaceFactory()


def _download(client, export) -> list[dict]:
    url = reverse(
        "contacts:export_download",
        kwargs={"workspace_slug": export.workspace.slug, "export_id": export.pk},
    )
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def _run(workspace, spec, django_capture_on_commit_callbacks) -> ContactExport:
    with django_capture_on_commit_callbacks(execute=False):
        export = contact_export_request(
            workspace=workspace, spec=spec, description="test", acting_user=UserFactory()
        )
    return contact_export_run(export_id=export.pk)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (-5, -5),
        (True, "yes"),
        (None, ""),
    ],
)
def test_csv_cell_neutralises_formulas(value, expected):
    assert csv_cell(value) == expected


def test_list_export_has_exactly_the_subscribers(
    workspace, member_client, django_capture_on_commit_callbacks
):
    FieldFactory(workspace=workspace, key="plan", label="Plan")
    news = ContactListFactory(workspace=workspace)
    ada = ContactFactory(
        workspace=workspace,
        email="ada@example.com",
        first_name="=cmd|' /C calc'!A0",
        attributes={"plan": "@pro"},
    )
    SubscriptionFactory(contact=ada, contact_list=news)
    bob = ContactFactory(workspace=workspace, email="bob@example.com", first_name="Bob")
    SubscriptionFactory(contact=bob, contact_list=news)
    left = ContactFactory(workspace=workspace, email="left@example.com")
    SubscriptionFactory(contact=left, contact_list=news, status="unsubscribed")
    pending = ContactFactory(workspace=workspace, email="pending@example.com")
    SubscriptionFactory(contact=pending, contact_list=news, status="pending")
    ContactFactory(workspace=workspace, email="not-on-list@example.com")

    export = _run(workspace, {"list": news.pk}, django_capture_on_commit_callbacks)
    assert export.status == ContactExport.Status.DONE
    assert export.row_count == 2
    rows = _download(member_client(workspace, Role.VIEWER), export)
    assert [row["email"] for row in rows] == ["ada@example.com", "bob@example.com"]
    assert rows[0]["first_name"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["plan"] == "'@pro"
    assert list(rows[0]) == ["email", "first_name", "last_name", "status", "created_at", "plan"]


def test_filter_export_has_exactly_the_matching_rows(
    workspace, member_client, django_capture_on_commit_callbacks
):
    ContactFactory(workspace=workspace, email="a@corp.example", status="bounced")
    ContactFactory(workspace=workspace, email="b@corp.example")
    ContactFactory(workspace=workspace, email="c@corp.example")
    ContactFactory(workspace=workspace, email="d@other.example")
    ContactFactory(email="e@corp.example")  # another workspace
    export = _run(
        workspace,
        {"filters": {"q": "corp", "status": "active"}},
        django_capture_on_commit_callbacks,
    )
    rows = _download(member_client(workspace), export)
    assert sorted(row["email"] for row in rows) == ["b@corp.example", "c@corp.example"]


def test_bulk_export_of_selection_queues_task_and_audits(
    workspace, member_client, django_capture_on_commit_callbacks
):
    """The suite runs Celery eagerly (tests/conftest.py): the on-commit task writes the file."""
    editor = member_client(workspace, Role.EDITOR)
    picked = ContactFactory(workspace=workspace, email="picked@example.com")
    ContactFactory(workspace=workspace, email="skipped@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        response = editor.post(
            reverse("contacts:contact_bulk", kwargs={"workspace_slug": workspace.slug}),
            {"action": "export", "ids": [picked.pk]},
        )
    assert response.status_code == 302
    export = ContactExport.objects.get(workspace=workspace)
    assert export.status == ContactExport.Status.DONE
    assert [row["email"] for row in _download(editor, export)] == ["picked@example.com"]
    entry = AuditEntry.objects.get(verb="contacts.exported")
    assert entry.actor == editor.user
    assert entry.workspace == workspace


def test_export_page_shows_progress_and_polls_while_running(workspace, member_client):
    ContactExport.objects.create(workspace=workspace, description="All contacts")
    response = member_client(workspace, Role.VIEWER).get(
        reverse("contacts:export_list", kwargs={"workspace_slug": workspace.slug})
    )
    body = response.content.decode()
    assert "Queued" in body
    assert 'hx-trigger="every 2s"' in body


def test_export_task_runs_once(workspace, django_capture_on_commit_callbacks):
    ContactFactory(workspace=workspace)
    export = _run(workspace, {"filters": {}}, django_capture_on_commit_callbacks)
    again = contact_export_run(export_id=export.pk)
    assert again.file_name == export.file_name


def test_download_is_isolated(workspace, django_capture_on_commit_callbacks):
    ContactFactory(workspace=workspace)
    export = _run(workspace, {"filters": {}}, django_capture_on_commit_callbacks)
    url = reverse(
        "contacts:export_download",
        kwargs={"workspace_slug": workspace.slug, "export_id": export.pk},
    )
    assert_workspace_isolated(url=url, workspace=workspace, member_role=Role.VIEWER, download=True)


def test_export_of_another_workspace_is_404(
    workspace, member_client, django_capture_on_commit_callbacks
):
    other = WorkspaceFactory()
    ContactFactory(workspace=other)
    export = _run(other, {"filters": {}}, django_capture_on_commit_callbacks)
    url = reverse(
        "contacts:export_download",
        kwargs={"workspace_slug": workspace.slug, "export_id": export.pk},
    )
    assert member_client(workspace).get(url).status_code == 404


def test_unfinished_export_is_not_downloadable(workspace, member_client):
    export = ContactExport.objects.create(workspace=workspace, description="x")
    url = reverse(
        "contacts:export_download",
        kwargs={"workspace_slug": workspace.slug, "export_id": export.pk},
    )
    assert member_client(workspace).get(url).status_code == 404


def test_segment_export_has_exactly_the_segments_contacts(
    workspace, member_client, django_capture_on_commit_callbacks
):
    from contacts.models import Segment

    FieldFactory(workspace=workspace, key="orders", label="Orders", type="number")
    ContactFactory(workspace=workspace, email="many@example.com", attributes={"orders": 12})
    ContactFactory(workspace=workspace, email="few@example.com", attributes={"orders": 9})
    ContactFactory(email="elsewhere@example.com", attributes={"orders": 50})
    segment = Segment.objects.create(
        workspace=workspace,
        name="Frequent",
        definition={
            "op": "and",
            "rules": [{"field": "attr:orders", "operator": "gt", "value": 10}],
        },
    )
    export = _run(workspace, {"segment": segment.pk}, django_capture_on_commit_callbacks)
    assert export.status == ContactExport.Status.DONE
    rows = _download(member_client(workspace, Role.VIEWER), export)
    assert [row["email"] for row in rows] == ["many@example.com"]
