"""Sending tests talk to a real DNS server on loopback, reached through settings."""

from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings

from sending.dnsserver import DnsServer
from sending.models import IpPool, SendingDomain, SendingIp
from sending.selectors import dkim_key_list_published

PLATFORM_IP = "198.51.100.7"


@pytest.fixture
def dns_server(settings) -> Iterator[DnsServer]:
    server = DnsServer().start()
    settings.DNS_RESOLVERS = [server.address]
    settings.DNS_TIMEOUT_SECONDS = 0.4
    settings.DNS_RETRIES = 1
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def platform_pool(db) -> IpPool:
    """The default shared pool with one sending IP, whose SPF the platform publishes."""
    pool = IpPool.objects.create(name="Shared", kind=IpPool.Kind.SHARED, is_default=True)
    SendingIp.objects.create(address=PLATFORM_IP, pool=pool, helo_hostname="mta1.testserver")
    return pool


def publish(server: DnsServer, domain: SendingDomain, *, skip=(), **override) -> None:
    """Put every record the domain should publish into the server's zone (minus `skip`)."""
    zone = server.zone
    zone[django_settings.SENDING_SPF_DOMAIN] = {"TXT": ["v=spf1 ip4:198.51.100.0/24 -all"]}
    records = {}
    for key in dkim_key_list_published(domain=domain):
        records[f"dkim:{key.selector}"] = (key.record_name, "TXT", [key.record_value])
    records["spf"] = (
        domain.return_path_host,
        "TXT",
        [f"v=spf1 include:{django_settings.SENDING_SPF_DOMAIN} ~all"],
    )
    records["dmarc"] = (
        f"_dmarc.{domain.domain}",
        "TXT",
        [f"v=DMARC1; p=none; rua=mailto:dmarc@{domain.domain}"],
    )
    records["return_path"] = (
        domain.return_path_host,
        "MX",
        [f"10 {django_settings.SENDING_INBOUND_HOST}."],
    )
    records["tracking"] = (
        domain.tracking_host,
        "CNAME",
        [f"{django_settings.SENDING_TRACKING_HOST}."],
    )
    zone.setdefault(domain.domain, {"A": ["192.0.2.10"]})
    for key, (name, rdtype, values) in records.items():
        family = key.split(":")[0]  # "dkim" stands for every DKIM key
        if key in skip or family in skip:
            continue
        values = override.get(key, override.get(family, values))
        zone.setdefault(name, {})[rdtype] = values


def dkim_dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
    """dkimpy's key look-up, through the app's resolver (settings.DNS_RESOLVERS)."""
    from sending.resolver import DnsClient

    lookup = DnsClient().lookup(name.decode(), "TXT")
    return b"".join(lookup.records[0].strings) if lookup.ok else None
