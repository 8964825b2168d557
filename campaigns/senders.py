"""Which verified sending domain a From address aligns with, asked of whoever knows.

Sending owns SendingDomain, and campaigns may not import sending: sending registers its
lookup here in its AppConfig.ready(). Without a registered lookup no address aligns, so
the pre-send check fails closed.
"""

from collections.abc import Callable
from typing import Protocol

from accounts.models import Workspace


class SenderDomain(Protocol):
    domain: str


SenderDomainLookup = Callable[..., SenderDomain | None]

_lookup: SenderDomainLookup | None = None


def register_sender_domain_lookup(func: SenderDomainLookup) -> None:
    """Install `func(*, workspace, address)`: the verified domain the address aligns with."""
    global _lookup
    _lookup = func


def sender_domain_for(*, workspace: Workspace, address: str) -> SenderDomain | None:
    """The verified domain (an object with `.domain`) that `address` aligns with, or None."""
    if _lookup is None:
        return None
    return _lookup(workspace=workspace, address=address)
