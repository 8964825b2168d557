"""Write paths of sending domains: add, remove, check DNS, rotate DKIM keys."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from sending import dkim, selectors
from sending.dnscheck import domain_check_run
from sending.domain_names import InvalidDomain, domain_normalize
from sending.models import DkimKey, DomainCheck, RecordState, SendingDomain
from sending.resolver import DnsClient

REFUSED_DOMAIN = (
    "This domain cannot be added. If it is yours and you believe this is wrong, contact support."
)


def _new_selector(domain: SendingDomain, algorithm: str) -> str:
    prefix = "esp" if algorithm == DkimKey.Algorithm.RSA else "ed"
    number = domain.dkim_keys.filter(algorithm=algorithm).count() + 1
    while domain.dkim_keys.filter(selector=f"{prefix}{number}").exists():
        number += 1
    return f"{prefix}{number}"


def _dkim_key_create(*, domain: SendingDomain, algorithm: str, status: str) -> DkimKey:
    pair = dkim.dkim_key_generate(algorithm)
    return DkimKey.objects.create(
        workspace=domain.workspace,
        domain=domain,
        selector=_new_selector(domain, algorithm),
        algorithm=algorithm,
        private_key=pair.private_pem,
        public_key=pair.public_b64,
        status=status,
        activated_at=timezone.now() if status == DkimKey.Status.ACTIVE else None,
    )


def sending_domain_add(
    *, workspace: Workspace, domain: str, acting_user: User | None
) -> SendingDomain:
    """A new domain with its first DKIM key (RSA-2048); nothing is saved if anything fails."""
    try:
        name = domain_normalize(domain)
    except InvalidDomain as error:
        raise ApplicationError(str(error)) from None
    existing = SendingDomain.objects.filter(domain=name).first()
    if existing is not None:
        if existing.workspace_id == workspace.pk:
            raise ApplicationError(f"{existing.display_name} is already one of your domains.")
        raise ApplicationError(REFUSED_DOMAIN)
    try:
        with transaction.atomic():
            sending_domain = SendingDomain.objects.create(
                workspace=workspace,
                domain=name,
                return_path_subdomain=settings.SENDING_RETURN_PATH_SUBDOMAIN,
                tracking_subdomain=settings.SENDING_TRACKING_SUBDOMAIN,
                created_by=acting_user,
            )
            key = _dkim_key_create(
                domain=sending_domain, algorithm=DkimKey.Algorithm.RSA, status=DkimKey.Status.ACTIVE
            )
            audit_record(
                workspace=workspace,
                actor=acting_user,
                verb="sending_domain.added",
                target=sending_domain,
                details={"domain": name, "selector": key.selector},
            )
    except IntegrityError:  # claimed by someone else in the meantime
        raise ApplicationError(REFUSED_DOMAIN) from None
    return sending_domain


@transaction.atomic
def sending_domain_remove(*, domain: SendingDomain, acting_user: User | None) -> None:
    audit_record(
        workspace=domain.workspace,
        actor=acting_user,
        verb="sending_domain.removed",
        target=domain,
        details={"domain": domain.domain},
    )
    domain.delete()


@transaction.atomic
def dkim_key_rotate(*, domain: SendingDomain, acting_user: User | None) -> DkimKey:
    """Start a rotation: a new key to publish; it signs once its record verifies."""
    if domain.dkim_keys.filter(
        algorithm=DkimKey.Algorithm.RSA, status=DkimKey.Status.PENDING
    ).exists():
        raise ApplicationError("A new key is already waiting for its DNS record.")
    key = _dkim_key_create(
        domain=domain, algorithm=DkimKey.Algorithm.RSA, status=DkimKey.Status.PENDING
    )
    audit_record(
        workspace=domain.workspace,
        actor=acting_user,
        verb="dkim_key.rotation_started",
        target=key,
        details={"domain": domain.domain, "selector": key.selector},
    )
    return key


@transaction.atomic
def dkim_key_add_ed25519(*, domain: SendingDomain, acting_user: User | None) -> DkimKey:
    """An Ed25519 key for a second signature; it signs once its record verifies."""
    if domain.dkim_keys.filter(
        algorithm=DkimKey.Algorithm.ED25519,
        status__in=[DkimKey.Status.PENDING, DkimKey.Status.ACTIVE],
    ).exists():
        raise ApplicationError("This domain already has an Ed25519 key.")
    key = _dkim_key_create(
        domain=domain, algorithm=DkimKey.Algorithm.ED25519, status=DkimKey.Status.PENDING
    )
    audit_record(
        workspace=domain.workspace,
        actor=acting_user,
        verb="dkim_key.created",
        target=key,
        details={"domain": domain.domain, "selector": key.selector, "algorithm": "ed25519"},
    )
    return key


def _activate_verified_keys(domain: SendingDomain, results: dict, now) -> None:
    grace = timedelta(days=settings.DKIM_ROTATION_GRACE_DAYS)
    for key in domain.dkim_keys.filter(status=DkimKey.Status.PENDING):
        if (results.get(key.record_key) or {}).get("state") != RecordState.PASS:
            continue
        for old in domain.dkim_keys.filter(algorithm=key.algorithm, status=DkimKey.Status.ACTIVE):
            old.status, old.retire_after = DkimKey.Status.RETIRING, now + grace
            old.save(update_fields=["status", "retire_after"])
            audit_record(
                workspace=domain.workspace,
                actor=None,
                verb="dkim_key.retiring",
                target=old,
                details={"selector": old.selector, "retire_after": old.retire_after.isoformat()},
            )
        key.status, key.activated_at = DkimKey.Status.ACTIVE, now
        key.save(update_fields=["status", "activated_at"])
        audit_record(
            workspace=domain.workspace,
            actor=None,
            verb="dkim_key.activated",
            target=key,
            details={"selector": key.selector, "algorithm": key.algorithm},
        )


def dkim_key_retire_due(*, domain: SendingDomain, now=None) -> int:
    """Keys whose grace period is over stop being published (their record may go)."""
    now = now or timezone.now()
    retired = 0
    for key in domain.dkim_keys.filter(status=DkimKey.Status.RETIRING, retire_after__lte=now):
        key.status, key.retired_at = DkimKey.Status.RETIRED, now
        key.save(update_fields=["status", "retired_at"])
        audit_record(
            workspace=domain.workspace,
            actor=None,
            verb="dkim_key.retired",
            target=key,
            details={"selector": key.selector},
        )
        retired += 1
    return retired


def _verdict(domain: SendingDomain, results: dict) -> str:
    active_rsa = domain.dkim_keys.filter(
        algorithm=DkimKey.Algorithm.RSA, status=DkimKey.Status.ACTIVE
    ).first()
    states = {
        "dkim": (results.get(active_rsa.record_key) or {}).get("state") if active_rsa else None,
        **{key: (results.get(key) or {}).get("state") for key in ("spf", "dmarc", "return_path")},
    }
    if all(state == RecordState.PASS for state in states.values()):
        return SendingDomain.Status.VERIFIED
    if any(state in (RecordState.MISSING, RecordState.MISMATCH, None) for state in states.values()):
        if domain.status == SendingDomain.Status.PENDING:
            return SendingDomain.Status.PENDING
        return SendingDomain.Status.FAILING
    return domain.status  # only "unknown" left: DNS trouble is not a verdict


@transaction.atomic
def sending_domain_check(
    *,
    domain: SendingDomain,
    trigger: str = DomainCheck.Trigger.MANUAL,
    dns: DnsClient | None = None,
) -> DomainCheck:
    """Check every record in DNS, store each state, move the domain's status, keep history."""
    domain = SendingDomain.objects.select_for_update().get(pk=domain.pk)
    now = timezone.now()
    dkim_key_retire_due(domain=domain, now=now)
    results = domain_check_run(selectors.sending_domain_spec(domain=domain), dns=dns)
    _activate_verified_keys(domain, results, now)
    before = domain.status
    after = _verdict(domain, results)
    domain.record_states = results
    domain.last_checked_at = now
    domain.status = after
    if after == SendingDomain.Status.VERIFIED and domain.first_verified_at is None:
        domain.first_verified_at = now
    if after == SendingDomain.Status.FAILING and before != SendingDomain.Status.FAILING:
        domain.broken_at = now
    domain.save(
        update_fields=[
            "record_states",
            "last_checked_at",
            "status",
            "first_verified_at",
            "broken_at",
            "updated_at",
        ]
    )
    check = DomainCheck.objects.create(
        workspace=domain.workspace,
        domain=domain,
        trigger=trigger,
        checked_at=now,
        status_before=before,
        status_after=after,
        results=results,
    )
    if before != after:
        failing = sorted(k for k, r in results.items() if r["state"] in ("missing", "mismatch"))
        audit_record(
            workspace=domain.workspace,
            actor=None,
            verb="sending_domain.broken"
            if after == SendingDomain.Status.FAILING
            else f"sending_domain.{after}",
            target=domain,
            details={"from": before, "to": after, "failing_records": failing},
        )
    return check


def sending_domain_has_unknown(*, check: DomainCheck) -> bool:
    return any(result["state"] == RecordState.UNKNOWN for result in check.results.values())


def sending_domain_ids_due(*, now=None) -> list[int]:
    """Domains not checked within DOMAIN_CHECK_INTERVAL_SECONDS (or never)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.DOMAIN_CHECK_INTERVAL_SECONDS)
    from django.db.models import Q

    return list(
        SendingDomain.objects.filter(
            Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=cutoff)
        )
        .order_by("last_checked_at")
        .values_list("pk", flat=True)
    )
