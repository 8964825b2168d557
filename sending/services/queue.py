"""Operators' holds on destination providers: while a provider is held, the claim-time
shaper (sending/shaping.py) sends nothing to it, from any IP or campaign; its queued and
deferred rows wait, untouched, until the hold is released (say during a provider's block,
or while its postmaster is contacted)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User
from sending.models import ProviderLimit
from sending.models.shaping import PROVIDERS

_LABELS = dict(PROVIDERS)
_REASON_MAX_LENGTH = ProviderLimit._meta.get_field("held_reason").max_length


def _provider_limit_locked(provider: str) -> ProviderLimit:
    if provider not in _LABELS:
        raise ApplicationError(f"Unknown provider: {provider or '(blank)'}.")
    limit, _created = ProviderLimit.objects.select_for_update().get_or_create(provider=provider)
    return limit


@transaction.atomic
def provider_hold(*, provider: str, reason: str, acting_user: User | None) -> ProviderLimit:
    """Stop sending to one provider until released. Holding a held provider again
    replaces the reason and keeps the time the hold began."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Say why the provider is held: other operators will read it.")
    if len(reason) > _REASON_MAX_LENGTH:
        raise ApplicationError(f"Keep the reason under {_REASON_MAX_LENGTH} characters.")
    limit = _provider_limit_locked(provider)
    limit.is_held, limit.held_reason = True, reason
    limit.held_at = limit.held_at or timezone.now()
    limit.save(update_fields=["is_held", "held_reason", "held_at"])
    audit_record(
        workspace=None,
        actor=acting_user,
        verb="provider.held",
        target=limit,
        details={"provider": provider, "reason": reason},
    )
    return limit


@transaction.atomic
def provider_release(*, provider: str, acting_user: User | None) -> ProviderLimit:
    """Let mail go to a held provider again; its waiting rows go at its usual rates."""
    limit = _provider_limit_locked(provider)
    if not limit.is_held:
        raise ApplicationError(f"{limit} is not held.")
    held_for = timezone.now() - limit.held_at if limit.held_at else None
    reason = limit.held_reason
    limit.is_held, limit.held_reason, limit.held_at = False, "", None
    limit.save(update_fields=["is_held", "held_reason", "held_at"])
    audit_record(
        workspace=None,
        actor=acting_user,
        verb="provider.released",
        target=limit,
        details={
            "provider": provider,
            "reason": reason,
            "held_seconds": round(held_for.total_seconds()) if held_for else None,
        },
    )
    return limit
