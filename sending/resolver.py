"""DNS look-ups for every check (domains, SPF, DMARC, DNSBL, PTR), against the resolvers
named in settings.DNS_RESOLVERS, with a timeout and retries on transient failures.

A look-up never raises for DNS trouble: it answers a `Lookup` whose `status` says what
happened, so that a SERVFAIL or a timeout becomes "unknown", never "missing".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from django.conf import settings


class Status(enum.StrEnum):
    OK = "ok"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, without records of this type
    ERROR = "error"  # SERVFAIL, refused, timeout, malformed answer: try again later
    CNAME_LOOP = "cname_loop"  # the name's CNAMEs point back at themselves: a fault to fix


@dataclass
class Lookup:
    name: str
    rdtype: str
    status: Status
    records: list = field(default_factory=list)
    error: str = ""
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @property
    def is_void(self) -> bool:
        return self.status in (Status.NXDOMAIN, Status.NODATA)


def parse_nameserver(value: str) -> tuple[str, int]:
    """'10.0.0.53', '10.0.0.53:5353', '[::1]:5353' -> (address, port)."""
    value = value.strip()
    if value.startswith("["):
        address, _, rest = value[1:].partition("]")
        return address, int(rest.lstrip(":") or 53)
    if value.count(":") == 1:
        address, port = value.split(":")
        return address, int(port)
    return value, 53


def make_resolver(nameservers: list[str] | None = None) -> dns.resolver.Resolver:
    """A resolver for the configured servers (the system's when none are configured)."""
    servers = nameservers if nameservers is not None else list(settings.DNS_RESOLVERS)
    timeout = float(settings.DNS_TIMEOUT_SECONDS)
    if servers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_nameserver(server)) for server in servers
        ]
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None
    return resolver


class DnsClient:
    """Look-ups through one resolver, with settings.DNS_RETRIES retries on errors."""

    def __init__(self, nameservers: list[str] | None = None, retries: int | None = None):
        self.resolver = make_resolver(nameservers)
        self.retries = settings.DNS_RETRIES if retries is None else retries
        self.query_count = 0

    def lookup(self, name: str | dns.name.Name, rdtype: str) -> Lookup:
        text = name.to_text() if isinstance(name, dns.name.Name) else name
        result = Lookup(name=text.rstrip("."), rdtype=rdtype, status=Status.ERROR)
        for attempt in range(1, self.retries + 2):
            result = self._once(text, rdtype)
            result.attempts = attempt
            if result.status != Status.ERROR:
                break
        return result

    def _once(self, name: str, rdtype: str) -> Lookup:
        self.query_count += 1
        shown = name.rstrip(".")
        try:
            answer = self.resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return Lookup(shown, rdtype, Status.NXDOMAIN)
        except dns.resolver.NoNameservers as error:
            if "CNAME chain is too long" in str(error):
                return Lookup(shown, rdtype, Status.CNAME_LOOP, error="CNAME loop")
            return Lookup(shown, rdtype, Status.ERROR, error=_servfail_text(error))
        except dns.resolver.LifetimeTimeout:
            return Lookup(shown, rdtype, Status.ERROR, error="timeout: no answer")
        except dns.exception.Timeout:
            return Lookup(shown, rdtype, Status.ERROR, error="timeout: no answer")
        except dns.message.ChainTooLong:
            return Lookup(shown, rdtype, Status.CNAME_LOOP, error="CNAME loop")
        except dns.exception.DNSException as error:
            return Lookup(shown, rdtype, Status.ERROR, error=f"DNS error: {error}")
        if answer.rrset is None:
            return Lookup(shown, rdtype, Status.NODATA)
        return Lookup(shown, rdtype, Status.OK, records=list(answer.rrset))


def _servfail_text(error: Exception) -> str:
    text = str(error)
    return "SERVFAIL" if "SERVFAIL" in text else f"no server answered: {text[:200]}"


def txt_strings(record) -> str:
    """One TXT record's strings joined, decoded leniently (malformed bytes never crash).

    Control characters become U+FFFD: they are never meaningful in SPF, DKIM or DMARC and
    PostgreSQL refuses NUL in the JSON the results are stored in.
    """
    text = b"".join(record.strings).decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
