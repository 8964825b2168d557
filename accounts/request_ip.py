"""The client's address, believed from X-Forwarded-For only when a trusted proxy says it."""

import ipaddress
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from functools import lru_cache

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The address of the request being served, for audit entries written deep in services.
current_client_ip: ContextVar[str | None] = ContextVar("current_client_ip", default=None)


@lru_cache(maxsize=4096)
def address_parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address written in `value`, or None. Cached: parsing costs more than the rest of
    a tracking pixel's answer, and the same addresses come back (proxies, image caches,
    offices behind one NAT)."""
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _is_trusted(address, trusted: Iterable[IpNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_ip(meta: Mapping[str, str], *, trusted_proxies: Iterable[IpNetwork]) -> str | None:
    """Walk X-Forwarded-For from the nearest hop back while the hops are trusted proxies.

    A client can write anything into the header; only the entries appended by proxies we
    trust are believed, so the first untrusted hop from the right is the client.
    """
    trusted = list(trusted_proxies)
    remote = address_parse(meta.get("REMOTE_ADDR", ""))
    if remote is None:
        return None
    if not _is_trusted(remote, trusted):
        return str(remote)
    hops = [hop for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    nearest = remote
    for hop in reversed(hops):
        address = address_parse(hop)
        if address is None:
            return str(nearest)
        if not _is_trusted(address, trusted):
            return str(address)
        nearest = address
    return str(nearest)
