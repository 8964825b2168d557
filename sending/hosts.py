"""Worker hosts and the addresses bound on them.

A sending IP can be the source address of a connection only on the host where it is
bound, so claims for an IP go to that host's own send queue (`send.<host>`), which every
send worker of the host consumes besides "send" (espsite/celery.py). Each worker
publishes its host's addresses in Redis when it starts and every
HOST_ADDRESSES_REFRESH_SECONDS after, kept for HOST_ADDRESSES_TTL_SECONDS: the admin reads
them to refuse an IP that its host does not have, and a host whose workers have all
stopped is forgotten within the TTL. task_create_missing_queues is off, so a task goes to
another host's queue as `task.apply_async(..., queue=Queue(host_queue(host)))`: a queue
name alone is refused where that queue is not declared.

Addresses are read from /proc (Linux): IPv4 from the LOCAL entries of
/proc/net/fib_trie (a /32 is one address, a shorter prefix is a range routed to the host,
such as 127.0.0.0/8), IPv6 from /proc/net/if_inet6.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

SEND_QUEUE = "send"
HOST_ADDRESSES_TTL_SECONDS = 600
# Several refreshes per TTL: one missed refresh (Redis restarting) forgets nothing.
HOST_ADDRESSES_REFRESH_SECONDS = 60.0

_KEY_PREFIX = "shaping:host:"
_TIMEOUT_SECONDS = 2
_FIB_TRIE = Path("/proc/net/fib_trie")
_IF_INET6 = Path("/proc/net/if_inet6")
_NONLOCAL_BIND = {
    4: Path("/proc/sys/net/ipv4/ip_nonlocal_bind"),
    6: Path("/proc/sys/net/ipv6/ip_nonlocal_bind"),
}
_clients: dict[str, redis.Redis] = {}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_name() -> str:
    """The name of this host, as sending IPs' bound_host names it."""
    return settings.SENDING_HOST_NAME


def host_queue(host: str) -> str:
    """The Celery queue of one host's send workers ("send" for no host in particular)."""
    return f"{SEND_QUEUE}.{host}" if host else SEND_QUEUE


def local_addresses() -> set[str]:
    """This host's addresses (normalised text, such as '127.0.0.1' and '::1')."""
    addresses, _ = _local_addresses_and_ranges()
    return {str(address) for address in addresses}


def address_is_local(address: str) -> bool:
    """Whether this host can use `address` as a source address."""
    parsed = _parse(address)
    if parsed is None:
        return False
    # Linux answers for all of 127.0.0.0/8 (and ::1) on every host, configured or not.
    if parsed.is_loopback:
        return True
    addresses, ranges = _local_addresses_and_ranges()
    if parsed in addresses or any(parsed in network for network in ranges):
        return True
    return _bindable(parsed)


def host_addresses_publish() -> None:
    """Store this host's addresses (and local ranges) in Redis for the other hosts' admin."""
    addresses, ranges = _local_addresses_and_ranges()
    members = [str(address) for address in addresses] + [str(network) for network in ranges]
    key = _KEY_PREFIX + host_name()
    with _redis().pipeline(transaction=True) as pipe:
        pipe.delete(key)
        if members:
            pipe.sadd(key, *members)
            pipe.expire(key, HOST_ADDRESSES_TTL_SECONDS)
        pipe.execute()


def host_has_address(host: str, address: str) -> bool | None:
    """Whether `host` has `address`; None when no worker of that host has published its
    addresses within HOST_ADDRESSES_TTL_SECONDS (so nobody knows)."""
    parsed = _parse(address)
    if parsed is None:
        return False
    if parsed.is_loopback:
        return True
    if host == host_name():
        return address_is_local(address)
    members = host_addresses_published(host)
    if not members:
        return None
    if str(parsed) in members:
        return True
    ranges = [ipaddress.ip_network(member) for member in members if "/" in member]
    return any(parsed in network for network in ranges if network.version == parsed.version)


def host_addresses_published(host: str) -> set[str]:
    """What `host`'s workers published (addresses and ranges), empty when nothing is."""
    return {member.decode() for member in _redis().smembers(_KEY_PREFIX + host)}


# --- reading the kernel's tables -----------------------------------------------------------


def _parse(address: str) -> Address | None:
    try:
        return ipaddress.ip_address((address or "").strip())
    except ValueError:
        return None


def _local_addresses_and_ranges() -> tuple[set[Address], set[Network]]:
    addresses: set[Address] = set()
    ranges: set[Network] = set()
    try:
        fib_trie = _FIB_TRIE.read_text()
    except OSError:
        fib_trie = None
    if fib_trie is not None:
        found, found_ranges = _fib_trie_local(fib_trie)
        addresses |= found
        ranges |= found_ranges
    else:
        addresses |= _resolver_addresses()
    try:
        addresses |= _if_inet6_addresses(_IF_INET6.read_text())
    except OSError:
        addresses.add(ipaddress.IPv6Address("::1"))
    addresses.add(ipaddress.IPv4Address("127.0.0.1"))
    return addresses, ranges


def _fib_trie_local(text: str) -> tuple[set[Address], set[Network]]:
    """'|-- 192.0.2.2' followed by '/32 host LOCAL' is one of the host's addresses;
    '|-- 127.0.0.0' followed by '/8 host LOCAL' a range routed to the host."""
    addresses: set[Address] = set()
    ranges: set[Network] = set()
    candidate = None
    for line in text.splitlines():
        entry = line.strip()
        if entry.startswith("|-- "):
            candidate = entry[4:].strip()
        elif candidate and entry.startswith("/") and entry.endswith(" host LOCAL"):
            prefix = entry.split()[0][1:]
            try:
                if prefix == "32":
                    addresses.add(ipaddress.IPv4Address(candidate))
                else:
                    ranges.add(ipaddress.IPv4Network(f"{candidate}/{prefix}", strict=False))
            except ValueError:
                continue
    return addresses, ranges


def _if_inet6_addresses(text: str) -> set[Address]:
    addresses: set[Address] = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            try:
                addresses.add(ipaddress.IPv6Address(int(fields[0], 16)))
            except ValueError:
                continue
    return addresses


def _resolver_addresses() -> set[Address]:
    """Without /proc: what the host's own name resolves to."""
    found: set[Address] = set()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        return found
    for info in infos:
        parsed = _parse(str(info[4][0]).split("%")[0])
        if parsed is not None:
            found.add(parsed)
    return found


def _bindable(address: Address) -> bool:
    """The last resort: the kernel lets a socket bind to it (meaningless, so False, where
    ip_nonlocal_bind lets any address bind)."""
    try:
        if _NONLOCAL_BIND[address.version].read_text().strip() != "0":
            return False
    except OSError:
        pass
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((str(address), 0))
    except OSError:
        return False
    return True


def _redis() -> redis.Redis:
    """One client per Redis URL, the URL read on each call (tests override it)."""
    url = settings.REDIS_URL
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=_TIMEOUT_SECONDS, socket_timeout=_TIMEOUT_SECONDS
        )
    return _clients[url]
