from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import AuditEntry, Invitation, Membership, Role, User, Workspace


def membership_for_slug(*, user: User, workspace_slug: str) -> Membership:
    """The user's membership of the workspace; 'not there' and 'not yours' are one 404."""
    membership = (
        Membership.objects.select_related("workspace")
        .filter(user=user, workspace__slug=workspace_slug)
        .first()
    )
    if membership is None:
        raise Http404("No such workspace.")
    return membership


def membership_list(*, workspace: Workspace) -> QuerySet[Membership]:
    return (
        Membership.objects.for_workspace(workspace).select_related("user").order_by("user__email")
    )


def membership_get(*, workspace: Workspace, membership_id: int) -> Membership:
    membership = (
        Membership.objects.for_workspace(workspace)
        .select_related("user", "workspace")
        .filter(pk=membership_id)
        .first()
    )
    if membership is None:
        raise Http404("No such member.")
    return membership


def owner_count(*, workspace: Workspace) -> int:
    return Membership.objects.for_workspace(workspace).filter(role=Role.OWNER).count()


def user_memberships(*, user: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")
    )


def user_default_workspace(*, user: User) -> Workspace | None:
    """The workspace used most recently, else the first by name."""
    membership = (
        Membership.objects.filter(user=user)
        .select_related("workspace")
        .order_by("-last_used_at", "workspace__name")
        .first()
    )
    return membership.workspace if membership else None


def _invitation_cutoff():
    return timezone.now() - timedelta(seconds=settings.INVITATION_MAX_AGE_SECONDS)


def invitation_list_open(*, workspace: Workspace) -> QuerySet[Invitation]:
    """Invitations not yet accepted whose link still works."""
    return Invitation.objects.for_workspace(workspace).filter(
        accepted_at__isnull=True, created_at__gt=_invitation_cutoff()
    )


def invitation_list_expired(*, workspace: Workspace) -> QuerySet[Invitation]:
    return Invitation.objects.for_workspace(workspace).filter(
        accepted_at__isnull=True, created_at__lte=_invitation_cutoff()
    )


def invitation_get_open(*, workspace: Workspace, invitation_id: int) -> Invitation:
    invitation = invitation_list_open(workspace=workspace).filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation


def audit_list(*, workspace: Workspace) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(workspace=workspace).select_related("actor")
