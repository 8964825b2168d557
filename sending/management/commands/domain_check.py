"""Run the sending-domain DNS checks against any domain and print one JSON object."""

import json

from django.core.management.base import BaseCommand, CommandError

from sending.dnscheck import default_spec, domain_check_run
from sending.domain_names import InvalidDomain, domain_normalize
from sending.models import SendingDomain, SendingIp
from sending.resolver import DnsClient
from sending.selectors import sending_domain_spec


class Command(BaseCommand):
    help = (
        "Check DKIM, SPF, DMARC (and, for our domains, the return-path MX and tracking "
        "CNAME) of DOMAIN; prints one JSON object."
    )

    def add_arguments(self, parser):
        parser.add_argument("domain")
        parser.add_argument(
            "--selector", action="append", default=[], help="DKIM selector (repeatable)"
        )
        parser.add_argument(
            "--nameserver", action="append", default=[], help="HOST[:PORT] to query instead"
        )

    def handle(self, *args, domain: str, selector: list[str], nameserver: list[str], **options):
        try:
            name = domain_normalize(domain)
        except InvalidDomain as error:
            raise CommandError(str(error)) from None
        ours = SendingDomain.objects.filter(domain=name).select_related("workspace").first()
        if ours is not None:
            spec = sending_domain_spec(domain=ours)
            known = {key.selector for key in spec.keys}
            extra = default_spec(domain=name, selectors=selector, platform_ips=[]).keys
            spec.keys += [key for key in extra if key.selector not in known]
        else:
            ips = list(SendingIp.objects.filter(is_active=True).values_list("address", flat=True))
            spec = default_spec(domain=name, selectors=selector, platform_ips=ips)
        dns = DnsClient(nameservers=nameserver or None)
        results = domain_check_run(spec, dns=dns)
        spf = results["spf"]
        dmarc = results["dmarc"]
        report = {
            "domain": name,
            "ours": ours is not None,
            "records": results,
            "spf": {
                "state": spf["state"],
                "lookups": spf.get("lookups"),
                "platform_ips": spf.get("ip_results", {}),
            },
            "dmarc": {
                "state": dmarc["state"],
                "policy": dmarc.get("policy"),
                "adkim": dmarc.get("adkim"),
                "aspf": dmarc.get("aspf"),
                "rua": dmarc.get("rua"),
            },
            "dkim": {
                r["selector"]: {"state": r["state"], "key_bits": r.get("key_bits")}
                for r in results.values()
                if r["key"].startswith("dkim:")
            },
        }
        self.stdout.write(json.dumps(report, ensure_ascii=False, sort_keys=True))
