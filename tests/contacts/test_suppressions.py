"""The suppressions page: view, search, add by paste or CSV, remove the removable."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import AuditEntry, Role
from contacts.models import Suppression
from contacts.services.suppressions import suppression_add
from contacts.suppressions import may_send_to
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def workspace():
    return WorkspaceFactory()


@pytest.fixture
def editor(workspace, member_client):
    return member_client(workspace, Role.EDITOR)


def _url(name, workspace, **kwargs):
    return reverse(f"contacts:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


def test_empty_page_explains_suppressions(workspace, editor):
    body = editor.get(_url("suppression_list", workspace)).content.decode()
    assert "No suppressed addresses" in body
    assert "Suppress addresses" in body


def test_paste_many_addresses(workspace, editor):
    response = editor.post(
        _url("suppression_add", workspace),
        {"addresses": "one@example.com, Two@Example.com\nnot-an-address; one@example.com"},
        follow=True,
    )
    assert {s.email for s in Suppression.objects.filter(workspace=workspace)} == {
        "one@example.com",
        "Two@example.com",
    }
    body = response.content.decode()
    assert "2 addresses suppressed" in body
    assert "not-an-address" in body
    assert not may_send_to(workspace=workspace, address="two@example.com")
    entry = AuditEntry.objects.get(verb="suppression.added")
    assert entry.details["count"] == 2
    assert entry.actor == editor.user


def test_upload_csv_of_addresses(workspace, editor):
    upload = SimpleUploadedFile(
        "list.csv",
        '\ufeffemail,name\nann@example.com,Ann\n"bo@example.com",Bo\n'.encode(),
        content_type="text/csv",
    )
    editor.post(_url("suppression_add", workspace), {"addresses": "", "file": upload})
    assert sorted(Suppression.objects.values_list("email", flat=True)) == [
        "ann@example.com",
        "bo@example.com",
    ]


def test_adding_existing_address_is_idempotent(workspace, editor):
    suppression_add(
        workspace=workspace, email="x@example.com", reason="hard_bounce", acting_user=None
    )
    editor.post(_url("suppression_add", workspace), {"addresses": "X@example.com"})
    suppression = Suppression.objects.get(workspace=workspace)
    assert suppression.reason == "hard_bounce"


def test_search_by_part_of_address(workspace, editor):
    suppression_add(
        workspace=workspace, email="alpha@example.com", reason="manual", acting_user=None
    )
    suppression_add(
        workspace=workspace, email="beta@example.com", reason="manual", acting_user=None
    )
    suppression_add(
        workspace=None, email="alphaplatform@example.com", reason="manual", acting_user=None
    )
    response = editor.get(
        _url("suppression_list", workspace), {"q": "alpha"}, headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert "alpha@example.com" in body
    assert "beta@example.com" not in body
    assert "alphaplatform@example.com" not in body  # operators' list is not shown here
    assert "<html" not in body


def test_remove_manual_suppression_is_audited(workspace, editor):
    suppression = suppression_add(
        workspace=workspace, email="back@example.com", reason="manual", acting_user=None
    )
    editor.post(_url("suppression_remove", workspace, suppression_id=suppression.pk))
    assert not Suppression.objects.filter(pk=suppression.pk).exists()
    assert AuditEntry.objects.filter(verb="suppression.removed", actor=editor.user).exists()


@pytest.mark.parametrize("reason", ["complaint", "erased"])
def test_complaints_and_erasures_cannot_be_removed(workspace, editor, reason):
    suppression = suppression_add(
        workspace=workspace, email="stay@example.com", reason=reason, acting_user=None
    )
    body = editor.get(_url("suppression_list", workspace)).content.decode()
    assert "Permanent" in body
    response = editor.post(
        _url("suppression_remove", workspace, suppression_id=suppression.pk), follow=True
    )
    assert "cannot be removed" in response.content.decode()
    assert Suppression.objects.filter(pk=suppression.pk).exists()


def test_viewer_sees_but_cannot_add(workspace, member_client):
    viewer = member_client(workspace, Role.VIEWER)
    assert viewer.get(_url("suppression_list", workspace)).status_code == 200
    response = viewer.post(_url("suppression_add", workspace), {"addresses": "a@example.com"})
    assert response.status_code == 403
    assert not Suppression.objects.exists()


def test_suppression_of_another_workspace_is_404(workspace, editor):
    foreign = suppression_add(
        workspace=WorkspaceFactory(), email="f@example.com", reason="manual", acting_user=None
    )
    response = editor.post(_url("suppression_remove", workspace, suppression_id=foreign.pk))
    assert response.status_code == 404
    assert Suppression.objects.filter(pk=foreign.pk).exists()
