"""Blocklist (DNSBL) queries: an IP as reversed octets (nibbles for IPv6) under the zone,
a domain as itself under the zone. Only the zone's listing codes mean 'listed'."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.reversename

from sending.resolver import DnsClient, txt_strings

# Presets offered to operators; none is enabled until an operator enables it.
PRESETS = [
    {
        "name": "Spamhaus ZEN",
        "zone": "zen.spamhaus.org",
        "kind": "ip",
        # SBL, CSS, XBL and PBL; 127.255.255.x answers are errors (e.g. public resolvers).
        "listing_codes": [f"127.0.0.{n}" for n in (2, 3, 4, 5, 6, 7, 9, 10, 11)],
    },
    {
        "name": "Spamhaus DBL",
        "zone": "dbl.spamhaus.org",
        "kind": "domain",
        "listing_codes": [f"127.0.1.{n}" for n in (2, 4, 5, 6, 102, 103, 104, 105, 106)],
    },
    {
        "name": "Barracuda",
        "zone": "b.barracudacentral.org",
        "kind": "ip",
        "listing_codes": ["127.0.0.2"],
    },
    {"name": "SpamCop", "zone": "bl.spamcop.net", "kind": "ip", "listing_codes": ["127.0.0.2"]},
    {
        "name": "SURBL multi",
        "zone": "multi.surbl.org",
        "kind": "domain",
        "listing_codes": [],
        "listing_bitmask": 8 | 16 | 64 | 128,  # PH, MW, ABUSE, CR
    },
]


@dataclass
class DnsblAnswer:
    query: str
    listed: bool = False
    codes: list[str] = field(default_factory=list)
    reason: str = ""
    error: str = ""  # the zone answered something we cannot trust, or did not answer


def dnsbl_query_name(*, subject: str, zone: str) -> str:
    try:
        address = ipaddress.ip_address(subject)
    except ValueError:
        return f"{subject.rstrip('.')}.{zone}"
    reversed_name = dns.reversename.from_address(str(address)).to_text(omit_final_dot=True)
    suffix = ".in-addr.arpa" if address.version == 4 else ".ip6.arpa"
    return f"{reversed_name.removesuffix(suffix)}.{zone}"


def dnsbl_lookup(*, dns: DnsClient, zone, subject: str) -> DnsblAnswer:
    """Ask zone (a DnsblZone or anything with .zone and .is_listing_code) about subject."""
    name = dnsbl_query_name(subject=subject, zone=zone.zone)
    answer = DnsblAnswer(query=name)
    lookup = dns.lookup(name, "A")
    if lookup.is_void:
        return answer
    if not lookup.ok:
        answer.error = f"{zone.zone} did not answer for {subject}: {lookup.error or 'error'}"
        return answer
    codes = sorted(record.address for record in lookup.records)
    listing = [code for code in codes if zone.is_listing_code(code)]
    if not listing:
        answer.error = (
            f"{zone.zone} answered {', '.join(codes)} for {subject}, which is not a listing "
            "code (an error answer, e.g. a query through a public resolver)"
        )
        return answer
    answer.listed, answer.codes = True, listing
    reasons = dns.lookup(name, "TXT")
    if reasons.ok:
        answer.reason = " ".join(txt_strings(record) for record in reasons.records)[:1000]
    return answer
