"""Suppression keys and the one question every sender asks: may we send to this address?"""

import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings

from accounts.models import Workspace
from contacts.models import Contact, Suppression


def _keys() -> list[bytes]:
    """The current hash key first, then those that verify older hashes."""
    return [key.encode() for key in settings.SUPPRESSION_HASH_KEYS]


def address_hash(address: str, *, key: bytes | None = None) -> str:
    """The keyed, deterministic hash that identifies a suppressed address (lower-cased)."""
    key = key or _keys()[0]
    return hmac.new(key, address.strip().lower().encode(), hashlib.sha256).hexdigest()


def address_hashes(address: str) -> list[str]:
    """Hashes of the address under every key still honoured (rotation keeps old entries)."""
    return [address_hash(address, key=key) for key in _keys()]


def suppressed_hashes(*, workspace: Workspace, addresses: Iterable[str]) -> set[str]:
    """Of these addresses, the lower-cased ones that are suppressed here or platform-wide."""
    by_hash: dict[str, str] = {}
    for address in addresses:
        for digest in address_hashes(address):
            by_hash[digest] = address.lower()
    if not by_hash:
        return set()
    found = Suppression.objects.filter(
        address_hash__in=list(by_hash), workspace__in=[workspace]
    ).values_list("address_hash", flat=True)
    platform = Suppression.objects.filter(
        address_hash__in=list(by_hash), workspace__isnull=True
    ).values_list("address_hash", flat=True)
    return {by_hash[digest] for digest in [*found, *platform]}


def may_send_to(*, workspace: Workspace, address: str) -> bool:
    """False when the address is suppressed (here or platform-wide) or its contact may not
    receive mail (bounced, complained, unsubscribed)."""
    if suppressed_hashes(workspace=workspace, addresses=[address]):
        return False
    contact_status = (
        Contact.objects.for_workspace(workspace)
        .filter(email__iexact=address.strip())
        .values_list("status", flat=True)
        .first()
    )
    return contact_status in (None, Contact.Status.ACTIVE)
