"""The DNS checks of a sending domain: what to publish and what is published.

`domain_check_run` takes a plain `DomainSpec` (no models), so the same checks serve the
verify button, the periodic task and the `domain_check` command for any domain.
Each record ends `pass | missing | mismatch | unknown`, with what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from sending import dkim, dmarc, spf
from sending.resolver import DnsClient, Status, txt_strings

FOUND_MAX_CHARS = 400  # one found value shown, however long the TXT answer was

PASS, MISSING, MISMATCH, UNKNOWN = "pass", "missing", "mismatch", "unknown"


@dataclass
class ExpectedKey:
    selector: str
    algorithm: str = dkim.RSA
    public_key: str | None = None  # None: report what is published, compare with nothing
    label: str = "DKIM"
    key: str = ""

    @property
    def record_key(self) -> str:
        return self.key or f"dkim:{self.selector}"


@dataclass
class DomainSpec:
    domain: str
    keys: list[ExpectedKey] = field(default_factory=list)
    spf_host: str = ""  # where SPF is evaluated: the envelope sender's (return-path) domain
    platform_ips: list[str] = field(default_factory=list)
    spf_include: str = ""
    return_path_host: str = ""
    inbound_host: str = ""
    tracking_host: str = ""
    tracking_target: str = ""
    dmarc_rua: str = ""


def _clip(value: str) -> str:
    return value if len(value) <= FOUND_MAX_CHARS else value[:FOUND_MAX_CHARS] + "…"


def _result(key, label, rdtype, name, expected, state, found=(), detail="", **extra) -> dict:
    return {
        "key": key,
        "label": label,
        "type": rdtype,
        "name": name,
        "expected": expected,
        "state": state,
        "found": [_clip(value) for value in found],
        "detail": detail,
        **extra,
    }


def _dns_trouble(lookup) -> tuple[str, str]:
    if lookup.status == Status.CNAME_LOOP:
        return MISMATCH, "CNAME loop: the name's CNAME records point back at each other."
    return UNKNOWN, f"DNS did not answer ({lookup.error}); checked again later."


def spf_expected_value(spec: DomainSpec) -> str:
    if spec.spf_include:
        return f"v=spf1 include:{spec.spf_include} ~all"
    mechanisms = " ".join(
        f"ip6:{ip}" if ":" in ip else f"ip4:{ip}" for ip in sorted(spec.platform_ips)
    )
    return f"v=spf1 {mechanisms} ~all".replace("  ", " ")


def dmarc_expected_value(spec: DomainSpec) -> str:
    rua = spec.dmarc_rua or f"dmarc-reports@{spec.domain}"
    return f"v=DMARC1; p=none; rua=mailto:{rua}; adkim=r; aspf=r"


def check_dkim(dns: DnsClient, spec: DomainSpec, expected: ExpectedKey) -> dict:
    name = f"{expected.selector}._domainkey.{spec.domain}"
    value = (
        dkim.dkim_record_value(algorithm=expected.algorithm, public_b64=expected.public_key)
        if expected.public_key
        else ""
    )
    make = lambda state, found=(), detail="", **extra: _result(  # noqa: E731
        expected.record_key, expected.label, "TXT", name, value, state, found, detail,
        selector=expected.selector, **extra,
    )  # fmt: skip
    lookup = dns.lookup(name, "TXT")
    if lookup.status in (Status.ERROR, Status.CNAME_LOOP):
        state, detail = _dns_trouble(lookup)
        return make(state, detail=detail)
    if not lookup.ok:
        return make(MISSING, detail=f"No TXT record at {name}.")
    texts = [txt_strings(record) for record in lookup.records]
    keys = [t for t in texts if "p=" in t.replace(" ", "") or t.startswith("v=DKIM1")]
    if not keys:
        return make(MISSING, texts, f"{name} has TXT records, but none is a DKIM key.")
    problems = []
    for text in keys:
        tags = dkim.dkim_tags(text)
        algorithm = tags.get("k", "rsa").lower()
        public = tags.get("p", "")
        bits = dkim.public_key_bits(algorithm=algorithm, public_b64=public) if public else None
        if not public:
            problems.append("The published key is empty (p=): the key is revoked.")
        elif expected.public_key and public != expected.public_key:
            problems.append("The published key (p=) is not this domain's key.")
        elif expected.public_key and expected.algorithm != algorithm:
            problems.append(f"k={algorithm} is published; the key is {expected.algorithm}.")
        elif bits is None:
            problems.append("The published key cannot be read (bad base64 or key data).")
        else:
            return make(PASS, texts, key_bits=bits, algorithm=algorithm)
    return make(MISMATCH, texts, " ".join(dict.fromkeys(problems)))


def check_spf(dns: DnsClient, spec: DomainSpec) -> dict:
    host = spec.spf_host or spec.domain
    expected = spf_expected_value(spec)
    make = lambda state, found=(), detail="", **extra: _result(  # noqa: E731
        "spf", "SPF", "TXT", host, expected, state, found, detail, **extra
    )
    status, records, error = spf.spf_records(dns, host)
    if status == Status.ERROR:
        return make(UNKNOWN, detail=f"DNS did not answer ({error}); checked again later.")
    if status == Status.CNAME_LOOP:
        return make(MISMATCH, detail="CNAME loop at the SPF name.")
    if not records:
        return make(MISSING, detail=f"No SPF record (v=spf1) at {host}.")
    if len(records) > 1:
        return make(
            MISMATCH, records, "Several SPF records: receivers treat this as a permanent error."
        )
    # Without platform IPs on record, a documentation address still measures the look-ups.
    ips = sorted(spec.platform_ips) or ["192.0.2.1"]
    evaluations = {ip: spf.spf_check(ip=ip, domain=host, dns=dns) for ip in ips}
    lookups = max(e.lookups for e in evaluations.values())
    results = {ip: e.result for ip, e in evaluations.items()} if spec.platform_ips else {}
    extra = {"lookups": lookups, "ip_results": results}
    for e in evaluations.values():
        if e.result == spf.PERMERROR:
            return make(MISMATCH, records, f"SPF permerror: {e.reason}.", **extra)
    for e in evaluations.values():
        if e.result == spf.TEMPERROR:
            return make(UNKNOWN, records, f"SPF temperror: {e.reason}.", **extra)
    if spec.platform_ips:
        failing = [f"{ip} gets {result}" for ip, result in results.items() if result != spf.PASS]
        if failing:
            return make(
                MISMATCH,
                records,
                "Our sending IPs do not pass: " + ", ".join(failing) + ".",
                **extra,
            )
    elif spec.spf_include and f"include:{spec.spf_include}" not in records[0].lower().split():
        return make(MISMATCH, records, f"The record does not include:{spec.spf_include}.", **extra)
    return make(PASS, records, **extra)


def check_dmarc(dns: DnsClient, spec: DomainSpec) -> dict:
    name = f"_dmarc.{spec.domain}"
    make = lambda state, found=(), detail="", **extra: _result(  # noqa: E731
        "dmarc", "DMARC", "TXT", name, dmarc_expected_value(spec), state, found, detail, **extra
    )
    found = dmarc.dmarc_lookup(domain=spec.domain, dns=dns)
    if found.status == Status.ERROR:
        return make(UNKNOWN, detail=f"DNS did not answer ({found.error}); checked again later.")
    if found.status == Status.CNAME_LOOP:
        return make(MISMATCH, detail="CNAME loop at the DMARC name.")
    record = found.record
    if record is None:
        return make(MISSING, detail=f"No DMARC record at {name} or a parent domain.")
    extra = {
        "policy": record.policy,
        "subdomain_policy": record.subdomain_policy,
        "adkim": record.adkim,
        "aspf": record.aspf,
        "rua": record.rua,
        "pct": record.pct,
        "found_at": f"_dmarc.{record.found_at}",
    }
    if not record.is_valid:
        return make(MISMATCH, found.found, " ".join(record.problems), **extra)
    if record.policy == "none":
        detail = (
            "p=none: receivers only report. Once reports show all your mail passing, move to "
            "p=quarantine, then p=reject."
        )
    else:
        detail = f"p={record.policy}: receivers act on mail that fails DMARC."
    if record.found_at != spec.domain:
        detail += f" The policy is inherited from {record.found_at}."
    return make(PASS, found.found, detail, **extra)


def check_mx(dns: DnsClient, spec: DomainSpec) -> dict:
    name, target = spec.return_path_host, spec.inbound_host
    make = lambda state, found=(), detail="": _result(  # noqa: E731
        "return_path", "Return path (bounces)", "MX", name, f"10 {target}", state, found, detail
    )
    lookup = dns.lookup(name, "MX")
    if lookup.status in (Status.ERROR, Status.CNAME_LOOP):
        state, detail = _dns_trouble(lookup)
        return make(state, detail=detail)
    if not lookup.ok:
        return make(MISSING, detail=f"No MX record at {name}.")
    exchanges = [r.exchange.to_text().rstrip(".").lower() for r in lookup.records]
    found = [f"{r.preference} {r.exchange.to_text().rstrip('.')}" for r in lookup.records]
    if target.lower() in exchanges:
        return make(PASS, found)
    return make(MISMATCH, found, f"Bounces must reach {target}.")


def check_cname(dns: DnsClient, spec: DomainSpec) -> dict:
    name, target = spec.tracking_host, spec.tracking_target
    make = lambda state, found=(), detail="": _result(  # noqa: E731
        "tracking", "Tracking links", "CNAME", name, target, state, found, detail
    )
    lookup = dns.lookup(name, "CNAME")
    if lookup.status in (Status.ERROR, Status.CNAME_LOOP):
        state, detail = _dns_trouble(lookup)
        return make(state, detail=detail)
    if lookup.status == Status.NXDOMAIN:
        return make(MISSING, detail=f"{name} does not exist.")
    if not lookup.ok:
        other = dns.lookup(name, "A")
        found = [f"A {r.address}" for r in other.records] if other.ok else []
        return make(MISSING if not found else MISMATCH, found, f"No CNAME record at {name}.")
    first = lookup.records[0].target.to_text().rstrip(".").lower()
    if first == target.lower():
        return make(PASS, [first])
    chain, current = [name.lower(), first], first
    for _ in range(8):
        step = dns.lookup(current, "CNAME")
        if not step.ok:
            break
        current = step.records[0].target.to_text().rstrip(".").lower()
        if current in chain:
            chain.append(current)
            return make(MISMATCH, [first], "CNAME loop: " + " → ".join(chain) + ".")
        chain.append(current)
    return make(MISMATCH, [first], f"The CNAME points at {first}, not {target}.")


def domain_check_run(spec: DomainSpec, *, dns: DnsClient | None = None) -> dict[str, dict]:
    """Every record's result, keyed 'dkim:<selector>', 'spf', 'dmarc', 'return_path', …"""
    dns = dns or DnsClient()
    results = {key.record_key: check_dkim(dns, spec, key) for key in spec.keys}
    results["spf"] = check_spf(dns, spec)
    results["dmarc"] = check_dmarc(dns, spec)
    if spec.return_path_host:
        results["return_path"] = check_mx(dns, spec)
    if spec.tracking_host:
        results["tracking"] = check_cname(dns, spec)
    return results


def default_spec(*, domain: str, selectors: list[str], platform_ips: list[str]) -> DomainSpec:
    """A spec for any domain (ours or not), with the platform's settings."""
    return DomainSpec(
        domain=domain,
        keys=[ExpectedKey(selector=s) for s in selectors],
        spf_host=domain,
        platform_ips=platform_ips,
        spf_include=settings.SENDING_SPF_DOMAIN,
        dmarc_rua=settings.DMARC_REPORT_ADDRESS,
    )
