"""Forward-confirmed reverse DNS of a sending IP: its PTR names, which of them resolve back
to the address, and whether the HELO hostname is one of them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.reversename

from sending.resolver import DnsClient, Status


@dataclass
class PtrResult:
    state: str  # pass | missing | mismatch | unknown
    names: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    detail: str = ""


def ptr_check(*, dns: DnsClient, address: str, helo_hostname: str) -> PtrResult:
    ip = ipaddress.ip_address(address)
    lookup = dns.lookup(dns_reverse(address), "PTR")
    if lookup.status in (Status.ERROR, Status.CNAME_LOOP):
        return PtrResult("unknown", detail=f"DNS did not answer: {lookup.error}")
    if not lookup.ok:
        return PtrResult("missing", detail=f"{address} has no PTR record.")
    names = [record.target.to_text().rstrip(".").lower() for record in lookup.records]
    confirmed = []
    for name in names:
        forward = dns.lookup(name, "A" if ip.version == 4 else "AAAA")
        if forward.ok and address in {record.address for record in forward.records}:
            confirmed.append(name)
    result = PtrResult("pass", names=names, confirmed=confirmed)
    if not confirmed:
        result.state = "mismatch"
        result.detail = f"{', '.join(names)} does not resolve back to {address}."
    elif helo_hostname.lower().rstrip(".") not in confirmed:
        result.state = "mismatch"
        result.detail = f"The PTR name {confirmed[0]} differs from the HELO name {helo_hostname}."
    return result


def dns_reverse(address: str) -> str:
    return dns.reversename.from_address(address).to_text()
