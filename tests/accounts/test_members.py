import re

import pytest
from django.urls import reverse

from accounts.models import AuditEntry, Invitation, Membership, Role, User, Workspace
from tests.factories import InvitationFactory, MembershipFactory, UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def _url(name, workspace, **kwargs):
    return reverse(name, kwargs={"workspace_slug": workspace.slug, **kwargs})


def test_owner_changes_role_and_it_is_audited(member_client, workspace):
    owner = member_client(workspace, Role.OWNER)
    target = MembershipFactory(workspace=workspace, role=Role.VIEWER)
    response = owner.post(
        _url("accounts:member_role", workspace, membership_id=target.pk), {"role": "admin"}
    )
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.role == Role.ADMIN
    entry = AuditEntry.objects.get(workspace=workspace, verb="member.role_changed")
    assert entry.actor == owner.user
    assert entry.details == {"user": target.user.email, "from": "viewer", "to": "admin"}
    assert entry.ip == "127.0.0.1"


@pytest.mark.parametrize("role", [Role.ADMIN, Role.EDITOR, Role.VIEWER])
def test_only_owners_change_roles(member_client, workspace, role):
    client = member_client(workspace, role)
    target = MembershipFactory(workspace=workspace, role=Role.VIEWER)
    response = client.post(
        _url("accounts:member_role", workspace, membership_id=target.pk), {"role": "owner"}
    )
    assert response.status_code == 403
    target.refresh_from_db()
    assert target.role == Role.VIEWER
    assert not AuditEntry.objects.filter(verb="member.role_changed").exists()


def test_last_owner_cannot_be_demoted_or_removed(member_client, workspace):
    owner = member_client(workspace, Role.OWNER)
    me = owner.membership
    response = owner.post(
        _url("accounts:member_role", workspace, membership_id=me.pk),
        {"role": "viewer"},
        follow=True,
    )
    assert b"at least one owner" in response.content
    me.refresh_from_db()
    assert me.role == Role.OWNER
    owner.post(_url("accounts:member_remove", workspace, membership_id=me.pk))
    assert Membership.objects.filter(pk=me.pk).exists()


def test_second_owner_may_demote_the_first(member_client, workspace):
    first = member_client(workspace, Role.OWNER)
    second = MembershipFactory(workspace=workspace, role=Role.OWNER)
    first.post(_url("accounts:member_role", workspace, membership_id=second.pk), {"role": "editor"})
    second.refresh_from_db()
    assert second.role == Role.EDITOR


def test_admin_removes_editor_but_not_owner(member_client, workspace):
    admin = member_client(workspace, Role.ADMIN)
    editor = MembershipFactory(workspace=workspace, role=Role.EDITOR)
    owner = MembershipFactory(workspace=workspace, role=Role.OWNER)
    admin.post(_url("accounts:member_remove", workspace, membership_id=editor.pk))
    assert not Membership.objects.filter(pk=editor.pk).exists()
    entry = AuditEntry.objects.get(verb="member.removed")
    assert entry.details["user"] == editor.user.email
    response = admin.post(
        _url("accounts:member_remove", workspace, membership_id=owner.pk), follow=True
    )
    assert b"Only owners can remove owners and admins" in response.content
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_editor_cannot_invite_or_remove(member_client, workspace):
    editor = member_client(workspace, Role.EDITOR)
    viewer = MembershipFactory(workspace=workspace, role=Role.VIEWER)
    assert (
        editor.post(_url("accounts:member_invite", workspace), {"email": "x@example.com"})
    ).status_code == 403
    assert (
        editor.post(_url("accounts:member_remove", workspace, membership_id=viewer.pk))
    ).status_code == 403
    assert not Invitation.objects.exists()


def test_viewer_reads_settings_but_cannot_change_them(member_client, workspace):
    viewer = member_client(workspace, Role.VIEWER)
    page = viewer.get(_url("accounts:workspace_settings", workspace))
    assert page.status_code == 200
    assert b"Only owners and admins" in page.content
    response = viewer.post(
        _url("accounts:workspace_settings", workspace),
        {"name": "Hacked", "postal_address": "", "time_zone": "UTC"},
    )
    assert response.status_code == 403
    workspace.refresh_from_db()
    assert workspace.name != "Hacked"


def test_admin_updates_settings_with_audit(member_client, workspace):
    admin = member_client(workspace, Role.ADMIN)
    response = admin.post(
        _url("accounts:workspace_settings", workspace),
        {"name": "Renamed", "postal_address": "2 New Road", "time_zone": "America/New_York"},
    )
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert (workspace.name, workspace.time_zone) == ("Renamed", "America/New_York")
    entry = AuditEntry.objects.get(verb="workspace.updated")
    assert entry.details["name"]["to"] == "Renamed"


def test_settings_refuse_unknown_time_zone(member_client, workspace):
    admin = member_client(workspace, Role.ADMIN)
    response = admin.post(
        _url("accounts:workspace_settings", workspace),
        {"name": "X", "postal_address": "", "time_zone": "Mars/Olympus"},
    )
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content


def test_invitation_mail_over_smtp_and_new_account_accepts(
    member_client, workspace, smtp_sink, django_capture_on_commit_callbacks
):
    admin = member_client(workspace, Role.ADMIN)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            _url("accounts:member_invite", workspace),
            {"email": "New.Person@Example.com", "role": "editor"},
            headers={"HX-Request": "true"},
        )
    assert response.status_code == 200
    assert b"new.person@example.com" in response.content
    assert AuditEntry.objects.filter(workspace=workspace, verb="member.invited").exists()

    [message] = smtp_sink.to("new.person@example.com")
    assert workspace.name in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    link = re.search(r"http://testserver(/invite/[^/\s]+/)", body).group(1)

    anonymous = admin.__class__()
    page = anonymous.get(link)
    assert page.status_code == 200
    assert b"Create your account to accept" in page.content
    joined = anonymous.post(link, {"full_name": "New Person", "password": "a-fine-long-passphrase"})
    assert joined.status_code == 302
    user = User.objects.get(email="new.person@example.com")
    assert Membership.objects.get(workspace=workspace, user=user).role == Role.EDITOR
    assert AuditEntry.objects.filter(workspace=workspace, verb="member.joined").exists()
    # The link works once.
    assert anonymous.get(link).status_code == 404


def test_existing_user_accepts_after_signing_in(client, workspace):
    invitee = UserFactory(email="invitee@example.com")
    invitation = InvitationFactory(workspace=workspace, email="invitee@example.com", role="viewer")
    from accounts.tokens import invitation_token_make

    link = f"/invite/{invitation_token_make(invitation_id=invitation.pk)}/"
    assert b"Sign in to accept" in client.get(link).content
    client.force_login(invitee)
    assert client.post(link).status_code == 302
    assert Membership.objects.get(workspace=workspace, user=invitee).role == Role.VIEWER


def test_invitation_for_another_address_is_not_accepted_by_signed_in_user(client, workspace):
    from accounts.tokens import invitation_token_make

    invitation = InvitationFactory(workspace=workspace, email="someone@example.com")
    stranger = UserFactory()
    client.force_login(stranger)
    link = f"/invite/{invitation_token_make(invitation_id=invitation.pk)}/"
    response = client.post(link, follow=True)
    assert b"This invitation was sent to someone@example.com" in response.content
    assert not Membership.objects.filter(workspace=workspace, user=stranger).exists()


@pytest.mark.parametrize("token", ["garbage", "1:forged:signature", "MQ:1tXXXX:abc"])
def test_forged_invitation_token_is_404(client, token):
    response = client.get(f"/invite/{token}/")
    assert response.status_code == 404


def test_expired_invitation_is_404(client, workspace, settings):
    from accounts.tokens import invitation_token_make

    invitation = InvitationFactory(workspace=workspace)
    link = f"/invite/{invitation_token_make(invitation_id=invitation.pk)}/"
    settings.INVITATION_MAX_AGE_SECONDS = -1
    assert client.get(link).status_code == 404


def test_inviting_twice_or_a_member_is_refused(member_client, workspace, smtp_sink):
    admin = member_client(workspace, Role.ADMIN)
    url = _url("accounts:member_invite", workspace)
    admin.post(url, {"email": "twice@example.com", "role": "viewer"})
    again = admin.post(url, {"email": "TWICE@example.com", "role": "viewer"})
    assert again.status_code == 400
    assert b"already been invited" in again.content
    member = admin.post(url, {"email": admin.user.email, "role": "viewer"})
    assert b"already a member" in member.content
    assert Invitation.objects.filter(workspace=workspace).count() == 1


def test_admin_cannot_invite_an_owner(member_client, workspace):
    admin = member_client(workspace, Role.ADMIN)
    response = admin.post(
        _url("accounts:member_invite", workspace), {"email": "boss@example.com", "role": "owner"}
    )
    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_user_switches_between_workspaces(member_client):
    first, second = WorkspaceFactory(name="First Co"), WorkspaceFactory(name="Second Co")
    client = member_client(first, Role.OWNER)
    MembershipFactory(workspace=second, user=client.user, role=Role.VIEWER)
    page = client.get(f"/w/{first.slug}/")
    assert b"Second Co" in page.content  # in the switcher
    assert client.get(f"/w/{second.slug}/").status_code == 200
    # Home now leads to the workspace used last.
    assert client.get("/")["Location"] == f"/w/{second.slug}/"


def test_user_creates_another_workspace(member_client, workspace):
    client = member_client(workspace)
    response = client.post("/accounts/workspaces/new/", {"name": "Side Project"})
    created = Workspace.objects.get(name="Side Project")
    assert response["Location"] == f"/w/{created.slug}/"
    assert created.status == Workspace.Status.PENDING_REVIEW
    assert created.membership_set.get().user == client.user


def test_any_member_may_leave_but_not_the_last_owner(client, workspace):
    viewer = MembershipFactory(workspace=workspace, role=Role.VIEWER)
    owner = MembershipFactory(workspace=workspace, role=Role.OWNER)
    client.force_login(viewer.user)
    response = client.post(f"/accounts/workspaces/{workspace.slug}/leave/")
    assert response["Location"] == "/"
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert AuditEntry.objects.filter(workspace=workspace, verb="member.left").exists()

    client.force_login(owner.user)
    refused = client.post(f"/accounts/workspaces/{workspace.slug}/leave/", follow=True)
    assert b"at least one owner" in refused.content
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_leaving_a_workspace_you_are_not_in_is_404(client, workspace):
    client.force_login(UserFactory())
    assert client.post(f"/accounts/workspaces/{workspace.slug}/leave/").status_code == 404


def test_expired_invitation_is_not_pending_and_can_be_sent_again(
    member_client, workspace, settings
):
    from datetime import timedelta

    from django.utils import timezone

    admin = member_client(workspace, Role.ADMIN)
    old = InvitationFactory(workspace=workspace, email="late@example.com")
    Invitation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    page = admin.get(_url("accounts:members", workspace))
    assert b"late@example.com" not in page.content
    admin.post(
        _url("accounts:member_invite", workspace), {"email": "late@example.com", "role": "viewer"}
    )
    fresh = Invitation.objects.get(workspace=workspace, email="late@example.com")
    assert fresh.pk != old.pk


def test_owner_demoting_themselves_gets_a_panel_without_owner_controls(member_client, workspace):
    first = member_client(workspace, Role.OWNER)
    MembershipFactory(workspace=workspace, role=Role.OWNER)
    response = first.post(
        _url("accounts:member_role", workspace, membership_id=first.membership.pk),
        {"role": "editor"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert b'name="role"' not in response.content  # no role selects for an editor


def test_htmx_request_with_expired_session_redirects_the_page(client, workspace):
    response = client.post(
        _url("accounts:member_invite", workspace),
        {"email": "x@example.com"},
        headers={"HX-Request": "true"},
    )
    assert response["HX-Redirect"] == "/accounts/login/"


def test_invitations_are_limited_per_workspace_per_day(member_client, settings):
    settings.INVITATIONS_PER_PENDING_WORKSPACE_PER_DAY = 2
    from accounts.models import Workspace as WorkspaceModel

    pending = WorkspaceFactory(status=WorkspaceModel.Status.PENDING_REVIEW)
    admin = member_client(pending, Role.OWNER)
    for n in range(3):
        response = admin.post(
            _url("accounts:member_invite", pending),
            {"email": f"p{n}@example.com", "role": "viewer"},
        )
    assert b"invitations today" in response.content
    assert Invitation.objects.filter(workspace=pending).count() == 2


def test_concurrent_demotions_keep_an_owner(workspace, transactional_db):
    """Two owners demote each other at the same moment, on two connections."""
    import threading

    from django.db import connection

    from accounts import services
    from accounts.errors import ApplicationError

    first = MembershipFactory(workspace=workspace, role=Role.OWNER)
    second = MembershipFactory(workspace=workspace, role=Role.OWNER)
    barrier, outcomes = threading.Barrier(2), []

    def demote(actor, target):
        try:
            barrier.wait()
            services.member_change_role(membership=target, role="viewer", acting_user=actor.user)
            outcomes.append("ok")
        except ApplicationError as error:
            outcomes.append(error.message)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=demote, args=(first, second)),
        threading.Thread(target=demote, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Membership.objects.filter(workspace=workspace, role=Role.OWNER).count() == 1
    # One demotion wins; the other actor is no longer an owner when its turn comes.
    assert sorted(outcomes) == ["Only owners can change roles.", "ok"]
