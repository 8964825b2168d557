"""Demo data of the accounts app, for `manage.py seed_demo`."""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Invitation, Membership, Role, User, Workspace

DEMO_EMAIL = "demo@example.com"
OPERATOR_EMAIL = "operator@example.com"


@dataclass
class AccountsDemo:
    user: User
    operator: User
    workspace: Workspace
    other_workspace: Workspace


def _user(*, email: str, password: str, full_name: str, staff: bool = False) -> User:
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        create = User.objects.create_superuser if staff else User.objects.create_user
        user = create(email=email, password=password, full_name=full_name)
    else:
        user.set_password(password)
        user.full_name = user.full_name or full_name
        user.save(update_fields=["password", "full_name"])
    return user


def _workspace(*, slug: str, name: str, postal_address: str, time_zone: str) -> Workspace:
    workspace, created = Workspace.objects.get_or_create(
        slug=slug,
        defaults={
            "name": name,
            "postal_address": postal_address,
            "time_zone": time_zone,
            "status": Workspace.Status.ACTIVE,
            "status_changed_at": timezone.now(),
        },
    )
    if created:
        audit_record(workspace=workspace, actor=None, verb="workspace.created", target=workspace)
    return workspace


@transaction.atomic
def accounts_demo_seed(*, password: str) -> AccountsDemo:
    """Idempotent: running it again resets the demo passwords and adds nothing twice."""
    user = _user(email=DEMO_EMAIL, password=password, full_name="Dana Demo")
    operator = _user(email=OPERATOR_EMAIL, password=password, full_name="Olli Operator", staff=True)
    demo = _workspace(
        slug="demo",
        name="Demo Outdoor Co.",
        postal_address="Demo Outdoor Co.\n12 Harbour Street\nBristol BS1 4QA\nUnited Kingdom",
        time_zone="Europe/London",
    )
    other = _workspace(
        slug="acme",
        name="Acme Newsletters",
        postal_address="Acme Inc.\n500 Market Street\nSan Francisco, CA 94105\nUSA",
        time_zone="America/Los_Angeles",
    )
    for workspace, role in ((demo, Role.OWNER), (other, Role.EDITOR)):
        _, created = Membership.objects.get_or_create(
            workspace=workspace, user=user, defaults={"role": role}
        )
        if created:
            audit_record(
                workspace=workspace,
                actor=None,
                verb="member.joined",
                target=user,
                details={"role": role.value},
            )
    teammates = [
        ("maria.editor@example.com", "Maria Editor", Role.EDITOR),
        ("victor.viewer@example.com", "Victor Viewer", Role.VIEWER),
    ]
    for email, full_name, role in teammates:
        teammate = _user(email=email, password=password, full_name=full_name)
        Membership.objects.get_or_create(workspace=demo, user=teammate, defaults={"role": role})
    Invitation.objects.get_or_create(
        workspace=demo,
        email="new.colleague@example.com",
        accepted_at=None,
        defaults={"role": Role.EDITOR, "invited_by": user},
    )
    return AccountsDemo(user=user, operator=operator, workspace=demo, other_workspace=other)
