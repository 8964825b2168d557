"""The DNS sandbox of `make run`: a loopback DNS server that publishes, for sending domains
under the reserved test TLDs (.example, .test, .invalid, .localhost), exactly the records the
platform asks for, and answers NXDOMAIN for every other name. The platform is pointed at it,
so that verifying a domain in the demo works and never queries DNS off the machine.
"""

from django.conf import settings

from sending.models import SendingDomain, SendingIp
from sending.selectors import sending_domain_records

RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost")


def sandbox_zone() -> dict[str, dict[str, list]]:
    """Name -> {type: values} for every record the sandbox publishes."""
    zone: dict[str, dict[str, list]] = {}
    ips = list(SendingIp.objects.values_list("address", flat=True)) or ["127.0.0.1"]
    ip4 = " ".join(f"ip4:{ip}" for ip in ips if ":" not in ip)
    zone[settings.SENDING_SPF_DOMAIN] = {"TXT": [f"v=spf1 {ip4} -all"]}
    for host in {settings.SENDING_INBOUND_HOST, settings.SENDING_TRACKING_HOST}:
        zone.setdefault(host, {})["A"] = ["127.0.0.1"]
    domains = SendingDomain.objects.select_related("workspace")
    for domain in domains:
        if not domain.domain.endswith(RESERVED_TLDS):
            continue
        zone.setdefault(domain.domain, {})["A"] = ["127.0.0.1"]
        for row in sending_domain_records(domain=domain):
            value = row["value"]
            if row["type"] in ("MX", "CNAME") and not value.endswith("."):
                value += "."
            values = [tuple(row["chunks"])] if row.get("chunks") else [value]
            zone.setdefault(row["name"], {}).setdefault(row["type"], []).extend(values)
    return zone
