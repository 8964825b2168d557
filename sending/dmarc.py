"""DMARC records: find the policy for a domain (RFC 9989's tree walk up the labels) and
parse its tags: policy, alignment modes, reporting addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sending.resolver import DnsClient, Status, txt_strings

POLICIES = ("none", "quarantine", "reject")
MAX_WALK = 8


@dataclass
class DmarcRecord:
    raw: str
    found_at: str
    policy: str = ""
    subdomain_policy: str = ""
    adkim: str = "r"
    aspf: str = "r"
    rua: list[str] = field(default_factory=list)
    pct: int = 100
    problems: list[str] = field(default_factory=list)

    @property
    def is_valid(self) -> bool:
        return not self.problems


@dataclass
class DmarcLookup:
    status: Status
    record: DmarcRecord | None = None
    error: str = ""
    found: list[str] = field(default_factory=list)


def dmarc_parse(text: str, *, found_at: str) -> DmarcRecord:
    record = DmarcRecord(raw=text, found_at=found_at)
    tags: dict[str, str] = {}
    for index, part in enumerate(p.strip() for p in text.split(";")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep:
            record.problems.append(f"“{part[:60]}” is not a tag=value pair")
            continue
        if index == 0 and (name != "v" or value != "DMARC1"):
            record.problems.append("the record must start with v=DMARC1")
        tags.setdefault(name, value)
    record.policy = tags.get("p", "").lower()
    if record.policy not in POLICIES:
        record.problems.append(
            "p= is missing" if not record.policy else f"p={record.policy[:30]} is not a policy"
        )
    record.subdomain_policy = tags.get("sp", "").lower() or record.policy
    for tag in ("adkim", "aspf"):
        value = tags.get(tag, "r").lower()
        if value not in ("r", "s"):
            record.problems.append(f"{tag}={value[:10]} must be r or s")
            value = "r"
        setattr(record, tag, value)
    record.rua = [uri.strip() for uri in tags.get("rua", "").split(",") if uri.strip()]
    for uri in record.rua:
        if not uri.lower().startswith("mailto:"):
            record.problems.append(f"rua {uri[:60]} is not a mailto: address")
    pct = tags.get("pct", "100")
    record.pct = int(pct) if pct.isdigit() and int(pct) <= 100 else 100
    return record


def _dmarc_at(dns: DnsClient, domain: str) -> tuple[Status, list[str], str]:
    result = dns.lookup(f"_dmarc.{domain}", "TXT")
    if not result.ok:
        return result.status, [], result.error
    texts = [txt_strings(r) for r in result.records]
    return Status.OK, [t for t in texts if re.match(r"^\s*v\s*=\s*DMARC1", t)], ""


def dmarc_lookup(*, domain: str, dns: DnsClient) -> DmarcLookup:
    """The DMARC record that applies to domain: its own, else the nearest parent's."""
    labels = domain.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)][:MAX_WALK]
    for candidate in candidates:
        status, records, error = _dmarc_at(dns, candidate)
        if status in (Status.ERROR, Status.CNAME_LOOP):
            return DmarcLookup(status=status, error=error)
        if len(records) > 1:
            record = dmarc_parse(records[0], found_at=candidate)
            record.problems.append(
                f"_dmarc.{candidate} has {len(records)} DMARC records; receivers ignore them all"
            )
            return DmarcLookup(status=Status.OK, record=record, found=records)
        if records:
            return DmarcLookup(
                status=Status.OK,
                record=dmarc_parse(records[0], found_at=candidate),
                found=records,
            )
    return DmarcLookup(status=Status.NXDOMAIN)
