"""Demo data of the sending app, for `manage.py seed_demo`: no DNS is queried."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Workspace
from sending import dkim
from sending.models import DkimKey, IpPool, RecordState, SendingDomain, SendingIp
from sending.selectors import sending_domain_spec
from sending.services.monitoring import dnsbl_zone_presets_install

DEMO_DOMAIN = "news.demo-outdoor.example"


def _demo_results(domain: SendingDomain) -> dict:
    """The records as a check would have found them had they been published."""
    spec = sending_domain_spec(domain=domain)
    results = {}
    for key in spec.keys:
        value = dkim.dkim_record_value(algorithm=key.algorithm, public_b64=key.public_key)
        results[key.record_key] = {
            "key": key.record_key, "label": key.label, "type": "TXT",
            "name": f"{key.selector}._domainkey.{domain.domain}", "expected": value,
            "state": RecordState.PASS, "found": [value], "detail": "", "selector": key.selector,
            "key_bits": 2048,
        }  # fmt: skip
    spf_value = f"v=spf1 include:{settings.SENDING_SPF_DOMAIN} ~all"
    dmarc_value = f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain.domain}; adkim=r; aspf=r"
    mx_value = f"10 {settings.SENDING_INBOUND_HOST}"
    rows = [
        ("spf", "SPF", "TXT", domain.return_path_host, spf_value, {"lookups": 1}),
        ("dmarc", "DMARC", "TXT", f"_dmarc.{domain.domain}", dmarc_value,
         {"policy": "none", "adkim": "r", "aspf": "r",
          "rua": [f"mailto:dmarc-reports@{domain.domain}"]}),
        ("return_path", "Return path (bounces)", "MX", domain.return_path_host, mx_value, {}),
        ("tracking", "Tracking links", "CNAME", domain.tracking_host,
         settings.SENDING_TRACKING_HOST, {}),
    ]  # fmt: skip
    for key, label, rdtype, name, value, extra in rows:
        results[key] = {
            "key": key, "label": label, "type": rdtype, "name": name, "expected": value,
            "state": RecordState.PASS, "found": [value], "detail": "Demo: not looked up.",
            **extra,
        }  # fmt: skip
    return results


@transaction.atomic
def sending_demo_seed(*, workspace: Workspace) -> SendingDomain:
    """Idempotent: a pre-verified demo domain and a shared demo pool on 127.0.0.1."""
    pool, _ = IpPool.objects.get_or_create(
        name="Shared demo pool", defaults={"kind": IpPool.Kind.SHARED, "is_default": True}
    )
    SendingIp.objects.get_or_create(
        address="127.0.0.1",
        defaults={"pool": pool, "helo_hostname": "localhost", "bound_host": "localhost"},
    )
    dnsbl_zone_presets_install()
    domain = SendingDomain.objects.filter(domain=DEMO_DOMAIN).first()
    if domain is None:
        now = timezone.now()
        domain = SendingDomain.objects.create(
            workspace=workspace,
            domain=DEMO_DOMAIN,
            return_path_subdomain=settings.SENDING_RETURN_PATH_SUBDOMAIN,
            tracking_subdomain=settings.SENDING_TRACKING_SUBDOMAIN,
            status=SendingDomain.Status.VERIFIED,
            first_verified_at=now,
            last_checked_at=now,
        )
        pair = dkim.dkim_key_generate(dkim.RSA)
        DkimKey.objects.create(
            workspace=workspace,
            domain=domain,
            selector="esp1",
            algorithm=DkimKey.Algorithm.RSA,
            private_key=pair.private_pem,
            public_key=pair.public_b64,
            status=DkimKey.Status.ACTIVE,
            activated_at=now,
        )
        domain.record_states = _demo_results(domain)
        domain.save(update_fields=["record_states"])
    return domain
