"""Personal data the accounts app keeps about a person: export and erase hooks.

A workspace's GDPR request concerns the people the workspace holds data about. When the
address also belongs to a platform user, the export includes that user's account and
membership of *this* workspace only (never what they do elsewhere on the platform).

Erasure does not delete the platform user: the account belongs to the person's
relationship with the platform operator, not to one workspace, and deleting it from a
workspace's request would let any workspace remove a colleague's or another tenant's
login. A user who wants their account gone asks the operator, who deletes it in the
admin. What the workspace holds is erased: invitations to the address, and the personal
fields of the workspace's audit entries that mention it (labels, detail values, IP),
through the one redaction audit entries allow.
"""

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from accounts.models import AuditEntry, Invitation, Membership, User, Workspace

MODELS = [User, Invitation, AuditEntry]
ERASE_ORDER = 900  # last: other apps' hooks may still read audit history


def audit_entries_mentioning(workspace: Workspace, email: str) -> QuerySet[AuditEntry]:
    address = email.strip()
    return (
        AuditEntry.objects.filter(workspace=workspace)
        .annotate(details_text=Cast("details", TextField()))
        .filter(
            Q(actor_label__iexact=address)
            | Q(target_label__icontains=address)
            | Q(details_text__icontains=address)
        )
    )


def _member(workspace: Workspace, email: str) -> User | None:
    return User.objects.filter(
        email__iexact=email.strip(), memberships__workspace=workspace
    ).first()


def export(*, workspace: Workspace, email: str) -> dict[str, list[dict]]:
    """The user account (if the address is a member's), invitations, audit entries."""
    user = _member(workspace, email)
    return {
        "users": [
            {
                "email": user.email,
                "full_name": user.full_name,
                "date_joined": user.date_joined,
                "last_login": user.last_login,
            }
        ]
        if user
        else [],
        "memberships": list(
            Membership.objects.for_workspace(workspace)
            .filter(user=user)
            .values("role", "created_at", "last_used_at")
        )
        if user
        else [],
        "invitations": list(
            Invitation.objects.for_workspace(workspace)
            .filter(email__iexact=email.strip())
            .values("email", "role", "created_at", "accepted_at")
        ),
        "audit_entries": list(
            audit_entries_mentioning(workspace, email).values(
                "verb", "actor_label", "target_label", "details", "ip", "created_at"
            )
        ),
    }


def erase(*, workspace: Workspace, email: str) -> None:
    """Delete invitations to the address; redact audit entries mentioning it."""
    Invitation.objects.for_workspace(workspace).filter(email__iexact=email.strip()).delete()
    entries = AuditEntry.objects.filter(
        pk__in=audit_entries_mentioning(workspace, email).values("pk")
    )
    entries.redact_personal_fields(needles=[email.strip()])
