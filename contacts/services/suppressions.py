from django.db import IntegrityError, transaction

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from contacts.addresses import InvalidAddress, normalize_email
from contacts.models import Suppression
from contacts.suppressions import address_hash, address_hashes

# Marketers may lift these; complaints and erasures stay (the person asked, or the law).
REMOVABLE_REASONS = frozenset(
    {Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.HARD_BOUNCE, Suppression.Reason.MANUAL}
)


@transaction.atomic
def suppression_add(
    *,
    workspace: Workspace | None,
    email: str,
    reason: str,
    source: str = "",
    acting_user: User | None,
    keep_address: bool = True,
) -> Suppression:
    """Suppress an address here (or platform-wide when workspace is None); idempotent."""
    try:
        normalized = normalize_email(email)
    except InvalidAddress as error:
        raise ApplicationError(f"{email!r}: {error}") from None
    existing = Suppression.objects.filter(
        workspace=workspace, address_hash__in=address_hashes(normalized)
    ).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            suppression = Suppression.objects.create(
                workspace=workspace,
                address_hash=address_hash(normalized),
                email=normalized if keep_address else "",
                reason=Suppression.Reason(reason),
                source=source[:300],
            )
    except IntegrityError:  # added concurrently
        return Suppression.objects.get(workspace=workspace, address_hash=address_hash(normalized))
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb="suppression.added",
        target=suppression,
        details={"email": normalized if keep_address else "", "reason": reason},
    )
    return suppression


@transaction.atomic
def suppression_remove(*, suppression: Suppression, acting_user: User) -> None:
    if suppression.reason not in REMOVABLE_REASONS:
        raise ApplicationError(
            f"A {suppression.get_reason_display().lower()} suppression cannot be removed."
        )
    audit_record(
        workspace=suppression.workspace,
        actor=acting_user,
        verb="suppression.removed",
        target=suppression,
        details={"email": suppression.email, "reason": suppression.reason},
    )
    suppression.delete()


@transaction.atomic
def suppression_add_many(
    *,
    workspace: Workspace,
    addresses: list[str],
    reason: str = Suppression.Reason.MANUAL,
    source: str = "",
    acting_user: User | None,
) -> tuple[int, list[str]]:
    """Suppress many addresses at once (pasted or uploaded): (how many were new, the invalid).

    One lookup per chunk for those already suppressed, one insert for the new ones and one
    audit entry for the whole batch.
    """
    valid: dict[str, str] = {}
    invalid: list[str] = []
    for raw in addresses:
        try:
            normalized = normalize_email(raw)
        except InvalidAddress:
            invalid.append(raw)
            continue
        valid.setdefault(normalized.lower(), normalized)
    added: list[str] = []
    items = list(valid.values())
    for start in range(0, len(items), 2_000):
        chunk = items[start : start + 2_000]
        hashes = {address: address_hashes(address) for address in chunk}
        existing = set(
            Suppression.objects.filter(
                workspace=workspace,
                address_hash__in=[digest for digests in hashes.values() for digest in digests],
            ).values_list("address_hash", flat=True)
        )
        new = [address for address in chunk if not existing.intersection(hashes[address])]
        created = Suppression.objects.bulk_create(
            [
                Suppression(
                    workspace=workspace,
                    address_hash=hashes[address][0],
                    email=address,
                    reason=Suppression.Reason(reason),
                    source=source[:300],
                )
                for address in new
            ],
            ignore_conflicts=True,
        )
        added.extend(address for address, row in zip(new, created, strict=True) if row)
    if added:
        audit_record(
            workspace=workspace,
            actor=acting_user,
            verb="suppression.added",
            details={
                "count": len(added),
                "reason": reason,
                "source": source[:300],
                "emails": added[:100],
            },
        )
    return len(added), invalid
