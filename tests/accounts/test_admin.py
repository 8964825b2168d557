import pytest

from accounts.models import AuditEntry, Workspace
from tests.factories import MembershipFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_operator_activates_and_suspends_workspaces(operator_client):
    pending = WorkspaceFactory(status=Workspace.Status.PENDING_REVIEW)
    response = operator_client.post(
        "/admin/accounts/workspace/",
        {"action": "activate", "_selected_action": [pending.pk]},
        follow=True,
    )
    assert b"1 workspace(s) now active" in response.content
    pending.refresh_from_db()
    assert pending.status == Workspace.Status.ACTIVE
    assert AuditEntry.objects.filter(workspace=pending, verb="workspace.active").exists()

    operator_client.post(
        "/admin/accounts/workspace/", {"action": "suspend", "_selected_action": [pending.pk]}
    )
    pending.refresh_from_db()
    assert pending.status == Workspace.Status.SUSPENDED
    entry = AuditEntry.objects.get(workspace=pending, verb="workspace.suspended")
    assert entry.actor == operator_client.user


@pytest.mark.parametrize(
    "path",
    [
        "/admin/accounts/workspace/?q=acme&status__exact=active",
        "/admin/accounts/membership/?q=example&role__exact=owner",
        "/admin/accounts/user/?q=example&is_staff__exact=1",
        "/admin/accounts/auditentry/?q=member",
        "/admin/accounts/invitation/",
    ],
)
def test_admin_lists_search_and_filter(operator_client, path):
    MembershipFactory(workspace=WorkspaceFactory(name="Acme"))
    assert operator_client.get(path).status_code == 200


def test_audit_entries_cannot_be_changed_or_deleted_in_admin(operator_client):
    workspace = WorkspaceFactory()
    entry = AuditEntry.objects.create(workspace=workspace, verb="something.happened")
    page = operator_client.get(f"/admin/accounts/auditentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    delete = operator_client.post(f"/admin/accounts/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_non_staff_member_cannot_reach_admin(member_client):
    client = member_client(WorkspaceFactory())
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403
    assert b"not allowed" in response.content


def test_anonymous_admin_visit_goes_to_sign_in(client):
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/login/")
    assert b"Sign in" in response.content


def test_operator_role_change_in_admin_is_audited_and_keeps_an_owner(operator_client):
    from accounts.models import Membership

    owner = MembershipFactory(role="owner")
    response = operator_client.post(
        f"/admin/accounts/membership/{owner.pk}/change/", {"role": "viewer"}, follow=True
    )
    assert b"at least one owner" in response.content
    owner.refresh_from_db()
    assert owner.role == "owner"

    editor = MembershipFactory(workspace=owner.workspace, role="editor")
    operator_client.post(f"/admin/accounts/membership/{editor.pk}/change/", {"role": "admin"})
    editor.refresh_from_db()
    assert editor.role == "admin"
    entry = AuditEntry.objects.get(verb="member.role_changed")
    assert entry.actor == operator_client.user
    assert entry.details["by_operator"] is True

    operator_client.post(f"/admin/accounts/membership/{owner.pk}/delete/", {"post": "yes"})
    assert Membership.objects.filter(pk=owner.pk).exists()
    operator_client.post(f"/admin/accounts/membership/{editor.pk}/delete/", {"post": "yes"})
    assert not Membership.objects.filter(pk=editor.pk).exists()
    assert AuditEntry.objects.filter(verb="member.removed").exists()


def test_operator_cannot_delete_the_only_owner_of_a_workspace(operator_client):
    from accounts.models import User

    owner = MembershipFactory(role="owner")
    operator_client.post(f"/admin/accounts/user/{owner.user_id}/delete/", {"post": "yes"})
    assert User.objects.filter(pk=owner.user_id).exists()
