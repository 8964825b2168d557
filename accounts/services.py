from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import selectors
from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.mail import templated_mail_send
from accounts.models import Invitation, Membership, Role, User, Workspace
from accounts.tokens import invitation_token_make

RESERVED_SLUGS = frozenset({"new", "admin", "api", "static", "settings", "w"})


def _unique_slug(name: str) -> str:
    base = (slugify(name) or "workspace")[:50].strip("-") or "workspace"
    if base in RESERVED_SLUGS:
        base = f"{base}-workspace"
    slug, counter = base, 2
    while Workspace.objects.filter(slug=slug).exists():
        slug = f"{base}-{counter}"
        counter += 1
    return slug


@transaction.atomic
def workspace_create(*, name: str, owner: User) -> Workspace:
    """A new workspace, pending an operator's review, with `owner` as its first owner."""
    workspace = Workspace.objects.create(name=name.strip(), slug=_unique_slug(name))
    Membership.objects.create(workspace=workspace, user=owner, role=Role.OWNER)
    audit_record(workspace=workspace, actor=owner, verb="workspace.created", target=workspace)
    return workspace


@transaction.atomic
def user_signup(
    *, email: str, password: str, full_name: str, workspace_name: str
) -> tuple[User, Workspace]:
    """Create an account and its first workspace, which waits for an operator's review."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ApplicationError("An account with this email address already exists.")
    user = User.objects.create_user(email=email, password=password, full_name=full_name.strip())
    workspace = workspace_create(name=workspace_name, owner=user)
    return user, workspace


@transaction.atomic
def workspace_update(
    *, workspace: Workspace, acting_user: User, name: str, postal_address: str, time_zone: str
) -> Workspace:
    changed = {}
    for field, value in (
        ("name", name.strip()),
        ("postal_address", postal_address.strip()),
        ("time_zone", time_zone),
    ):
        if getattr(workspace, field) != value:
            changed[field] = {"from": getattr(workspace, field), "to": value}
            setattr(workspace, field, value)
    if changed:
        workspace.save(update_fields=[*changed, "updated_at"])
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="workspace.updated",
            target=workspace,
            details=changed,
        )
    return workspace


@transaction.atomic
def workspace_set_status(
    *, workspace: Workspace, status: str, acting_user: User | None, reason: str = ""
) -> Workspace:
    """Activate or suspend a workspace (operators); sending is refused unless active."""
    status = Workspace.Status(status)
    previous = workspace.status
    if previous == status:
        return workspace
    workspace.status, workspace.status_reason = status, reason
    workspace.status_changed_at = timezone.now()
    workspace.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb=f"workspace.{status.value}",
        target=workspace,
        details={"from": previous, "to": status.value, "reason": reason},
    )
    return workspace


def _check_can_grant(*, acting: Membership, role: str) -> None:
    if role == Role.OWNER and acting.role != Role.OWNER:
        raise ApplicationError("Only owners can make someone an owner.")


@transaction.atomic
def member_invite(*, workspace: Workspace, email: str, role: str, acting_user: User) -> Invitation:
    """Invite an address to the workspace; the mail leaves once the transaction commits."""
    acting = selectors.membership_for_slug(user=acting_user, workspace_slug=workspace.slug)
    if not acting.has_role(Role.ADMIN):
        raise ApplicationError("Only owners and admins can invite members.")
    _check_can_grant(acting=acting, role=role)
    email = email.strip().lower()
    if Membership.objects.for_workspace(workspace).filter(user__email__iexact=email).exists():
        raise ApplicationError(f"{email} is already a member of this workspace.")
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                workspace=workspace, email=email, role=role, invited_by=acting_user
            )
    except IntegrityError:
        raise ApplicationError(f"{email} has already been invited.") from None
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="member.invited",
        target=invitation,
        details={"email": email, "role": role},
    )
    token = invitation_token_make(invitation_id=invitation.pk)
    transaction.on_commit(
        lambda: templated_mail_send(
            template="accounts/email/invitation",
            to=[email],
            context={
                "workspace": workspace,
                "inviter": acting_user,
                "role": Role(role).label,
                "path": f"/invite/{token}/",
            },
        )
    )
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, acting_user: User) -> None:
    audit_record(
        workspace=invitation.workspace,
        actor=acting_user,
        verb="member.invitation_revoked",
        target=invitation,
        details={"email": invitation.email},
    )
    invitation.delete()


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Join the workspace as the signed-in user, whose address must be the invited one."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is not None:
        raise ApplicationError("This invitation has already been used.")
    if user.email.lower() != invitation.email.lower():
        raise ApplicationError(
            f"This invitation was sent to {invitation.email}. "
            "Sign in with that address to accept it."
        )
    membership, created = Membership.objects.get_or_create(
        workspace=invitation.workspace, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    if created:
        audit_record(
            workspace=invitation.workspace,
            actor=user,
            verb="member.joined",
            target=membership,
            details={
                "role": membership.role,
                "invited_by": getattr(invitation.invited_by, "email", ""),
            },
        )
    return membership


@transaction.atomic
def invitation_accept_as_new_user(
    *, invitation: Invitation, full_name: str, password: str
) -> Membership:
    """Create the account of the invited address and join, all or nothing."""
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise ApplicationError("An account with this address exists: sign in to accept.")
    user = User.objects.create_user(
        email=invitation.email, password=password, full_name=full_name.strip()
    )
    return invitation_accept(invitation=invitation, user=user)


def _lock_owners(workspace: Workspace) -> int:
    """Count owners under a lock, so two concurrent demotions cannot leave none."""
    owners = Membership.objects.select_for_update().filter(workspace=workspace, role=Role.OWNER)
    return len(list(owners))


@transaction.atomic
def member_change_role(*, membership: Membership, role: str, acting_user: User) -> Membership:
    """Change a member's role; owners only, and a workspace always keeps an owner."""
    role = Role(role)
    acting = selectors.membership_for_slug(
        user=acting_user, workspace_slug=membership.workspace.slug
    )
    if acting.role != Role.OWNER:
        raise ApplicationError("Only owners can change roles.")
    previous = membership.role
    if previous == role:
        return membership
    if previous == Role.OWNER and _lock_owners(membership.workspace) <= 1:
        raise ApplicationError(
            "A workspace needs at least one owner. Make someone else owner first."
        )
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        workspace=membership.workspace,
        actor=acting_user,
        verb="member.role_changed",
        target=membership,
        details={"user": membership.user.email, "from": previous, "to": role.value},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, acting_user: User) -> None:
    """Remove a member: owners remove anyone, admins editors and viewers; anyone may leave."""
    workspace = membership.workspace
    acting = selectors.membership_for_slug(user=acting_user, workspace_slug=workspace.slug)
    leaving = acting.pk == membership.pk
    if not leaving:
        if not acting.has_role(Role.ADMIN):
            raise ApplicationError("Only owners and admins can remove members.")
        if membership.has_role(Role.ADMIN) and acting.role != Role.OWNER:
            raise ApplicationError("Only owners can remove owners and admins.")
    if membership.role == Role.OWNER and _lock_owners(workspace) <= 1:
        raise ApplicationError(
            "A workspace needs at least one owner. Make someone else owner first."
        )
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="member.left" if leaving else "member.removed",
        target=membership,
        details={"user": membership.user.email, "role": membership.role},
    )
    membership.delete()
