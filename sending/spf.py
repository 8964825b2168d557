"""SPF evaluation (RFC 7208 check_host) with the resolver of settings.

Includes and redirects are followed; the mechanisms and modifiers that query DNS (include,
a, mx, ptr, exists, redirect) count against the limit of 10, and more than 2 void look-ups
is a permerror, as receivers enforce.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sending.resolver import DnsClient, Status, txt_strings

MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_NAMES = 10

PASS, FAIL, SOFTFAIL, NEUTRAL = "pass", "fail", "softfail", "neutral"
NONE, PERMERROR, TEMPERROR = "none", "permerror", "temperror"
QUALIFIERS = {"+": PASS, "-": FAIL, "~": SOFTFAIL, "?": NEUTRAL}

_MECHANISM = re.compile(
    r"^(?P<q>[+\-~?]?)(?P<name>all|include|a|mx|ptr|ip4|ip6|exists)"
    r"(?::(?P<domain>[^/]+))?(?P<cidr>/.*)?$",
    re.IGNORECASE,
)
_MODIFIER = re.compile(r"^(?P<name>[a-z][a-z0-9_.\-]*)=(?P<value>.*)$", re.IGNORECASE)
_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}", re.IGNORECASE)


class SpfError(Exception):
    def __init__(self, result: str, reason: str):
        super().__init__(reason)
        self.result = result
        self.reason = reason


@dataclass
class SpfEvaluation:
    result: str
    reason: str = ""
    lookups: int = 0
    void_lookups: int = 0
    record: str = ""
    records_seen: dict[str, str] = field(default_factory=dict)


@dataclass
class _State:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    dns: DnsClient
    lookups: int = 0
    void_lookups: int = 0
    records_seen: dict[str, str] = field(default_factory=dict)

    def count_lookup(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise SpfError(PERMERROR, f"too many DNS lookups (more than {MAX_LOOKUPS}) at {term}")

    def query(self, name: str, rdtype: str):
        result = self.dns.lookup(name, rdtype)
        if result.status in (Status.ERROR,):
            raise SpfError(TEMPERROR, f"DNS error for {name} {rdtype}: {result.error}")
        if result.status == Status.CNAME_LOOP:
            raise SpfError(PERMERROR, f"CNAME loop at {name}")
        if result.is_void:
            self.void_lookups += 1
            if self.void_lookups > MAX_VOID_LOOKUPS:
                raise SpfError(PERMERROR, f"too many void lookups (more than {MAX_VOID_LOOKUPS})")
        return result


def spf_records(dns: DnsClient, domain: str) -> tuple[Status, list[str], str]:
    """(status, the v=spf1 records at domain, error text)."""
    result = dns.lookup(domain, "TXT")
    if not result.ok:
        return result.status, [], result.error
    records = [txt_strings(r) for r in result.records]
    return Status.OK, [r for r in records if re.match(r"^v=spf1(\s|$)", r, re.IGNORECASE)], ""


def spf_check(*, ip: str, domain: str, sender: str = "", dns: DnsClient) -> SpfEvaluation:
    """check_host(ip, domain, sender): the SPF result for mail from ip claiming domain."""
    state = _State(
        ip=ipaddress.ip_address(ip),
        sender=sender or f"postmaster@{domain}",
        helo=domain,
        dns=dns,
    )
    try:
        result, record = _check_host(state, domain, depth=0)
        reason = ""
    except SpfError as error:
        result, record, reason = error.result, "", error.reason
    return SpfEvaluation(
        result=result,
        reason=reason,
        lookups=state.lookups,
        void_lookups=state.void_lookups,
        record=record or state.records_seen.get(domain, ""),
        records_seen=state.records_seen,
    )


def _check_host(state: _State, domain: str, depth: int) -> tuple[str, str]:
    if depth > MAX_LOOKUPS + 1:
        raise SpfError(PERMERROR, "include/redirect recursion too deep")
    status, records, error = spf_records(state.dns, domain)
    if status == Status.ERROR:
        raise SpfError(TEMPERROR, f"DNS error for {domain}: {error}")
    if status == Status.CNAME_LOOP:
        raise SpfError(PERMERROR, f"CNAME loop at {domain}")
    if not records:
        return NONE, ""
    if len(records) > 1:
        raise SpfError(PERMERROR, f"{domain} publishes {len(records)} SPF records")
    record = records[0]
    state.records_seen[domain] = record
    terms = record.split()[1:]
    redirect = None
    for term in terms:
        modifier = _MODIFIER.match(term)
        if modifier and not _MECHANISM.match(term):
            name = modifier["name"].lower()
            if name == "redirect":
                if redirect is not None:
                    raise SpfError(PERMERROR, f"{domain}: more than one redirect=")
                redirect = modifier["value"]
            continue  # exp= and unknown modifiers are ignored
        mechanism = _MECHANISM.match(term)
        if not mechanism:
            raise SpfError(PERMERROR, f"{domain}: unknown SPF term {term!r}")
        if _matches(state, domain, mechanism, term, depth):
            return QUALIFIERS[mechanism["q"] or "+"], record
    if redirect is not None:
        state.count_lookup(f"redirect={redirect}")
        target = _expand(state, redirect, domain)
        result, _ = _check_host(state, target, depth + 1)
        if result == NONE:
            raise SpfError(PERMERROR, f"redirect={target} has no SPF record")
        return result, record
    return NEUTRAL, record


def _cidr(term: str, cidr: str | None) -> tuple[int, int]:
    v4, v6 = 32, 128
    if cidr:
        parts = cidr.split("//")
        try:
            if parts[0].strip("/"):
                v4 = int(parts[0].strip("/"))
            if len(parts) > 1 and parts[1]:
                v6 = int(parts[1])
        except ValueError:
            raise SpfError(PERMERROR, f"bad prefix length in {term!r}") from None
        if not (0 <= v4 <= 32 and 0 <= v6 <= 128):
            raise SpfError(PERMERROR, f"bad prefix length in {term!r}")
    return v4, v6


def _in_network(ip, address: str, v4: int, v6: int) -> bool:
    try:
        candidate = ipaddress.ip_address(address)
    except ValueError:
        return False
    if candidate.version != ip.version:
        return False
    prefix = v4 if ip.version == 4 else v6
    return ip in ipaddress.ip_network(f"{candidate}/{prefix}", strict=False)


def _addresses(state: _State, name: str) -> list[str]:
    rdtype = "A" if state.ip.version == 4 else "AAAA"
    result = state.query(name, rdtype)
    return [r.address for r in result.records] if result.ok else []


def _matches(state: _State, domain: str, m: re.Match, term: str, depth: int) -> bool:
    name = m["name"].lower()
    target = _expand(state, m["domain"], domain) if m["domain"] else domain
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        if not m["domain"]:
            raise SpfError(PERMERROR, f"{term!r} needs an address")
        value = m["domain"] + (m["cidr"] or "")
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise SpfError(PERMERROR, f"bad network in {term!r}") from None
        if (name == "ip4") != (network.version == 4):
            raise SpfError(PERMERROR, f"wrong address family in {term!r}")
        return state.ip.version == network.version and state.ip in network
    state.count_lookup(term)
    if name == "include":
        if not m["domain"]:
            raise SpfError(PERMERROR, "include without a domain")
        result, _ = _check_host(state, target, depth + 1)
        if result == PASS:
            return True
        if result in (FAIL, SOFTFAIL, NEUTRAL):
            return False
        if result == NONE:
            raise SpfError(PERMERROR, f"include:{target} has no SPF record")
        raise SpfError(result, f"include:{target} gave {result}")
    if name == "a":
        v4, v6 = _cidr(term, m["cidr"])
        return any(_in_network(state.ip, a, v4, v6) for a in _addresses(state, target))
    if name == "mx":
        v4, v6 = _cidr(term, m["cidr"])
        mx = state.query(target, "MX")
        exchanges = [r.exchange.to_text().rstrip(".") for r in mx.records] if mx.ok else []
        if len(exchanges) > MAX_MX_NAMES:
            raise SpfError(PERMERROR, f"{target} has more than {MAX_MX_NAMES} MX names")
        return any(
            _in_network(state.ip, a, v4, v6) for host in exchanges for a in _addresses(state, host)
        )
    if name == "exists":
        result = state.query(target, "A")
        return result.ok and bool(result.records)
    if name == "ptr":
        import dns.reversename

        ptr = state.query(dns.reversename.from_address(str(state.ip)).to_text(), "PTR")
        for record in (ptr.records if ptr.ok else [])[:10]:
            host = record.target.to_text().rstrip(".")
            if (host == target or host.endswith("." + target)) and str(state.ip) in _addresses(
                state, host
            ):
                return True
        return False
    return False


def _expand(state: _State, spec: str, domain: str) -> str:
    """Macro expansion of a domain-spec (%{d}, %{i}, %{ir}, %{l}, %{o}, %{s}, %{h} …)."""
    local, _, sender_domain = state.sender.rpartition("@")
    if state.ip.version == 4:
        ip_text = str(state.ip)
    else:
        ip_text = ".".join(state.ip.exploded.replace(":", ""))
    values = {
        "s": state.sender,
        "l": local or "postmaster",
        "o": sender_domain,
        "d": domain,
        "i": ip_text,
        "p": "unknown",
        "v": "in-addr" if state.ip.version == 4 else "ip6",
        "h": state.helo,
    }

    def replace(match: re.Match) -> str:
        letter, digits, reverse, delimiters = match.groups()
        parts = re.split("[" + re.escape(delimiters or ".") + "]", values[letter.lower()])
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise SpfError(PERMERROR, f"bad macro {match.group(0)!r}")
            parts = parts[-int(digits) :]
        return ".".join(parts)

    expanded = _MACRO.sub(replace, spec).replace("%%", "%").replace("%_", " ").replace("%-", "%20")
    if "%" in expanded:
        raise SpfError(PERMERROR, f"bad macro in {spec!r}")
    return expanded.rstrip(".")
