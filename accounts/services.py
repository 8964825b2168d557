from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import selectors, throttles
from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.mail import templated_mail_send
from accounts.models import Invitation, Membership, Role, User, Workspace, role_at_least
from accounts.provisioning import workspace_provisioners
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
    for provision in workspace_provisioners:
        provision(workspace=workspace)
    return workspace


@transaction.atomic
def user_signup(
    *, email: str, password: str, full_name: str, workspace_name: str
) -> tuple[User, Workspace]:
    """Create an account and its first workspace, which waits for an operator's review."""
    email = email.strip().lower()
    taken = ApplicationError("An account with this email address already exists.")
    if User.objects.filter(email__iexact=email).exists():
        raise taken
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=email, password=password, full_name=full_name.strip()
            )
    except IntegrityError:  # a double submit created it meanwhile
        raise taken from None
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
    daily_limit = (
        settings.INVITATIONS_PER_WORKSPACE_PER_DAY
        if workspace.is_active
        else settings.INVITATIONS_PER_PENDING_WORKSPACE_PER_DAY
    )
    if not throttles.rate_limit_hit(
        kind="invitations", value=str(workspace.pk), limit=daily_limit, window_seconds=86400
    ):
        raise ApplicationError(
            f"This workspace has sent {daily_limit} invitations today. Try again tomorrow."
        )
    if Membership.objects.for_workspace(workspace).filter(user__email__iexact=email).exists():
        raise ApplicationError(f"{email} is already a member of this workspace.")
    selectors.invitation_list_expired(workspace=workspace).filter(email__iexact=email).delete()
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
    templated_mail_send(
        template="accounts/email/invitation",
        to=[email],
        context={
            "workspace_name": workspace.name,
            "inviter_name": acting_user.full_name,
            "inviter_email": acting_user.email,
            "role": Role(role).label,
            "path": f"/invite/{token}/",
            "max_age_days": settings.INVITATION_MAX_AGE_SECONDS // 86400,
        },
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
    exists = ApplicationError("An account with this address exists: sign in to accept.")
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise exists
    try:
        with transaction.atomic():
            user = User.objects.create_user(
                email=invitation.email, password=password, full_name=full_name.strip()
            )
    except IntegrityError:
        raise exists from None
    return invitation_accept(invitation=invitation, user=user)


def _lock_members(workspace: Workspace) -> dict[int, Membership]:
    """Every membership of the workspace, locked and freshly read, by id.

    Role changes and removals decide on these rows (who acts, who is owner, how many
    owners remain), so two concurrent requests cannot both pass on a stale view.
    """
    rows = Membership.objects.select_for_update().filter(workspace=workspace).order_by("pk")
    return {row.pk: row for row in rows.select_related("user")}


def _acting_role(*, members: dict[int, Membership], acting_user: User, as_operator: bool) -> str:
    if as_operator:
        return Role.OWNER  # platform staff, acting from the admin
    acting = next((m for m in members.values() if m.user_id == acting_user.pk), None)
    if acting is None:
        raise ApplicationError("You are no longer a member of this workspace.")
    return acting.role


def _owner_count(members: dict[int, Membership]) -> int:
    return sum(1 for member in members.values() if member.role == Role.OWNER)


LAST_OWNER_MESSAGE = "A workspace needs at least one owner. Make someone else owner first."


@transaction.atomic
def member_change_role(
    *, membership: Membership, role: str, acting_user: User, as_operator: bool = False
) -> Membership:
    """Change a member's role; owners (or operators) only; a workspace always keeps an owner."""
    role = Role(role)
    workspace = membership.workspace
    members = _lock_members(workspace)
    if (
        _acting_role(members=members, acting_user=acting_user, as_operator=as_operator)
        != Role.OWNER
    ):
        raise ApplicationError("Only owners can change roles.")
    current = members.get(membership.pk)
    if current is None:
        raise ApplicationError("This person is no longer a member.")
    previous = current.role
    if previous == role:
        return current
    if previous == Role.OWNER and _owner_count(members) <= 1:
        raise ApplicationError(LAST_OWNER_MESSAGE)
    current.role = role
    current.save(update_fields=["role"])
    membership.role = role
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="member.role_changed",
        target=current,
        details={
            "user": current.user.email,
            "from": previous,
            "to": role.value,
            **({"by_operator": True} if as_operator else {}),
        },
    )
    return current


@transaction.atomic
def member_add(*, workspace: Workspace, user: User, role: str, acting_user: User) -> Membership:
    """Operators add a member directly (from the admin)."""
    membership, created = Membership.objects.get_or_create(
        workspace=workspace, user=user, defaults={"role": Role(role)}
    )
    if not created:
        raise ApplicationError(f"{user.email} is already a member.")
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="member.added",
        target=membership,
        details={"user": user.email, "role": membership.role, "by_operator": True},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, acting_user: User, as_operator: bool = False) -> None:
    """Remove a member: owners remove anyone, admins editors and viewers; anyone may leave."""
    workspace = membership.workspace
    members = _lock_members(workspace)
    current = members.get(membership.pk)
    if current is None:
        return
    leaving = current.user_id == acting_user.pk
    acting_role = _acting_role(members=members, acting_user=acting_user, as_operator=as_operator)
    if not leaving:
        if not role_at_least(acting_role, Role.ADMIN):
            raise ApplicationError("Only owners and admins can remove members.")
        if current.has_role(Role.ADMIN) and acting_role != Role.OWNER:
            raise ApplicationError("Only owners can remove owners and admins.")
    if current.role == Role.OWNER and _owner_count(members) <= 1:
        raise ApplicationError(LAST_OWNER_MESSAGE)
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="member.left" if leaving else "member.removed",
        target=current,
        details={
            "user": current.user.email,
            "role": current.role,
            **({"by_operator": True} if as_operator else {}),
        },
    )
    current.delete()


def user_sole_ownerships(*, user: User) -> list[Workspace]:
    """Workspaces that would be left without an owner if this user went away."""
    owned = Membership.objects.filter(user=user, role=Role.OWNER).values_list(
        "workspace", flat=True
    )
    return [
        workspace
        for workspace in Workspace.objects.filter(pk__in=owned)
        if Membership.objects.filter(workspace=workspace, role=Role.OWNER).count() == 1
    ]
