"""One way to write an audit entry, for every app."""

from typing import Any

from django.db import models

from accounts.models import AuditEntry, User, Workspace
from accounts.request_ip import current_client_ip


def audit_record(
    *,
    workspace: Workspace | None,
    actor: User | None,
    verb: str,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
) -> AuditEntry:
    """Append an entry; the client address defaults to that of the request being served."""
    return AuditEntry.objects.create(
        workspace=workspace,
        actor=actor if actor is not None and actor.pk else None,
        actor_label=actor.email if actor is not None else "",
        verb=verb,
        target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:300] if target is not None else "",
        details=details or {},
        ip=ip or current_client_ip.get(),
    )
