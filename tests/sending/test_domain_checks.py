"""Each record of a sending domain checked against a real DNS server on loopback."""

import itertools

import pytest

from accounts.models import AuditEntry
from sending.dnsserver import SERVFAIL, TIMEOUT
from sending.models import DomainCheck, SendingDomain
from sending.services.domains import sending_domain_add, sending_domain_check
from tests.factories import WorkspaceFactory
from tests.sending.conftest import PLATFORM_IP, publish

pytestmark = pytest.mark.django_db


@pytest.fixture
def domain(db) -> SendingDomain:
    return sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )


def states(domain: SendingDomain) -> dict[str, str]:
    domain.refresh_from_db()
    return {
        ("dkim" if key.startswith("dkim:") else key): result["state"]
        for key, result in domain.record_states.items()
    }


def test_all_records_correct_verifies_domain(dns_server, domain):
    publish(dns_server, domain)
    check = sending_domain_check(domain=domain)
    assert states(domain) == {
        "dkim": "pass",
        "spf": "pass",
        "dmarc": "pass",
        "return_path": "pass",
        "tracking": "pass",
    }
    assert domain.status == SendingDomain.Status.VERIFIED
    assert domain.first_verified_at == domain.last_checked_at == check.checked_at
    assert check.status_before == "pending"
    assert check.status_after == "verified"
    assert domain.record_states["dkim:esp1"]["key_bits"] == 2048
    assert AuditEntry.objects.filter(verb="sending_domain.verified", target_id=domain.pk).exists()


@pytest.mark.parametrize("record", ["dkim", "spf", "dmarc", "return_path", "tracking"])
def test_each_missing_record_is_reported_missing(dns_server, domain, record):
    publish(dns_server, domain, skip=[record])
    sending_domain_check(domain=domain)
    found = states(domain)
    assert found[record] == "missing"
    assert all(state == "pass" for key, state in found.items() if key != record)
    # The tracking CNAME is optional; every other record is required.
    expected = "verified" if record == "tracking" else "pending"
    assert domain.status == expected


def test_dkim_key_mismatch_is_reported_with_what_was_found(dns_server, domain):
    other = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "A" * 300
    publish(dns_server, domain, dkim=[other])
    sending_domain_check(domain=domain)
    result = domain.record_states["dkim:esp1"] if states(domain) else None
    assert result["state"] == "mismatch"
    assert "not this domain's key" in result["detail"]
    assert result["found"][0].startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A")
    assert domain.status == SendingDomain.Status.PENDING


def test_spf_with_nested_includes_passes_for_our_ips(dns_server, domain, platform_pool):
    publish(dns_server, domain, spf=["v=spf1 include:a.spf.example -all"])
    dns_server.zone["a.spf.example"] = {"TXT": ["v=spf1 include:b.spf.example ?all"]}
    dns_server.zone["b.spf.example"] = {"TXT": ["v=spf1 redirect=c.spf.example"]}
    dns_server.zone["c.spf.example"] = {"TXT": [f"v=spf1 ip4:{PLATFORM_IP}/32 -all"]}
    sending_domain_check(domain=domain)
    spf = domain.record_states["spf"] if states(domain) else None
    assert spf["state"] == "pass"
    assert spf["ip_results"] == {PLATFORM_IP: "pass"}
    assert spf["lookups"] == 3  # two includes and a redirect


def test_spf_over_ten_lookups_is_permerror(dns_server, domain, platform_pool):
    chain = [f"l{n}.spf.example" for n in range(12)]
    publish(dns_server, domain, spf=[f"v=spf1 include:{chain[0]} -all"])
    for current, following in itertools.pairwise(chain):
        dns_server.zone[current] = {"TXT": [f"v=spf1 include:{following} -all"]}
    dns_server.zone[chain[-1]] = {"TXT": [f"v=spf1 ip4:{PLATFORM_IP} -all"]}
    sending_domain_check(domain=domain)
    spf = domain.record_states["spf"] if states(domain) else None
    assert spf["state"] == "mismatch"
    assert "permerror" in spf["detail"]
    assert "too many DNS lookups" in spf["detail"]
    assert spf["lookups"] == 11


def test_spf_without_our_ips_is_mismatch(dns_server, domain, platform_pool):
    publish(dns_server, domain, spf=["v=spf1 ip4:203.0.113.0/24 include:other.example ~all"])
    dns_server.zone["other.example"] = {"TXT": ["v=spf1 a -all"], "A": ["203.0.113.9"]}
    sending_domain_check(domain=domain)
    spf = domain.record_states["spf"] if states(domain) else None
    assert spf["state"] == "mismatch"
    assert spf["ip_results"] == {PLATFORM_IP: "softfail"}
    assert f"{PLATFORM_IP} gets softfail" in spf["detail"]


def test_spf_without_platform_ips_needs_our_include(dns_server, domain):
    publish(dns_server, domain, spf=["v=spf1 mx ~all"])
    sending_domain_check(domain=domain)
    assert states(domain)["spf"] == "mismatch"
    assert "include:_spf.testserver" in domain.record_states["spf"]["detail"]


@pytest.mark.parametrize(
    ("record", "state", "policy"),
    [
        (None, "missing", None),
        ("v=DMARC1; p=none; rua=mailto:d@news.example.com", "pass", "none"),
        ("v=DMARC1; p=reject; adkim=s; aspf=r; rua=mailto:d@news.example.com", "pass", "reject"),
        ("v=DMARC1; p=maybe", "mismatch", None),
    ],
)
def test_dmarc_is_parsed(dns_server, domain, record, state, policy):
    if record is None:
        publish(dns_server, domain, skip=["dmarc"])
    else:
        publish(dns_server, domain, dmarc=[record])
    sending_domain_check(domain=domain)
    dmarc = domain.record_states["dmarc"] if states(domain) else None
    assert dmarc["state"] == state
    if policy:
        assert dmarc["policy"] == policy
        assert dmarc["rua"] == ["mailto:d@news.example.com"]
    if policy == "none":
        assert "p=quarantine" in dmarc["detail"]  # guidance to move on
    if policy == "reject":
        assert dmarc["adkim"] == "s"
        assert dmarc["aspf"] == "r"


def test_dmarc_of_the_parent_domain_applies(dns_server, domain):
    publish(dns_server, domain, skip=["dmarc"])
    dns_server.zone["_dmarc.example.com"] = {"TXT": ["v=DMARC1; p=quarantine"]}
    sending_domain_check(domain=domain)
    dmarc = domain.record_states["dmarc"] if states(domain) else None
    assert dmarc["state"] == "pass"
    assert dmarc["found_at"] == "_dmarc.example.com"
    assert dmarc["policy"] == "quarantine"


def test_cname_loop_is_a_mismatch_not_a_crash(dns_server, domain):
    publish(dns_server, domain, skip=["tracking", "dkim"])
    dns_server.zone[domain.tracking_host] = {"CNAME": "loop-a.example.com."}
    dns_server.zone["loop-a.example.com"] = {"CNAME": f"{domain.tracking_host}."}
    dns_server.zone[f"esp1._domainkey.{domain.domain}"] = {"CNAME": "k.example.com."}
    dns_server.zone["k.example.com"] = {"CNAME": f"esp1._domainkey.{domain.domain}."}
    sending_domain_check(domain=domain)
    found = states(domain)
    assert found["tracking"] == "mismatch"
    assert "CNAME loop" in domain.record_states["tracking"]["detail"]
    assert found["dkim"] == "mismatch"
    assert "CNAME loop" in domain.record_states["dkim:esp1"]["detail"]


def test_nxdomain_everywhere_is_missing(dns_server, domain):
    sending_domain_check(domain=domain)
    assert set(states(domain).values()) == {"missing"}


@pytest.mark.parametrize("failure", [SERVFAIL, TIMEOUT])
def test_servfail_and_timeout_are_unknown_not_missing_and_retried(dns_server, domain, failure):
    publish(dns_server, domain)
    name = f"esp1._domainkey.{domain.domain}"
    dns_server.zone[name] = failure
    sending_domain_check(domain=domain)
    result = domain.record_states["dkim:esp1"] if states(domain) else None
    assert result["state"] == "unknown"
    assert ("SERVFAIL" if failure == SERVFAIL else "timeout") in result["detail"]
    assert dns_server.queries_for(name, "TXT") == 2  # DNS_RETRIES=1: asked twice
    assert domain.status == SendingDomain.Status.PENDING


def test_a_transient_servfail_is_retried_and_then_passes(dns_server, domain):
    publish(dns_server, domain)
    name = f"_dmarc.{domain.domain}"
    dns_server.fail_first[name] = 1
    sending_domain_check(domain=domain)
    assert states(domain)["dmarc"] == "pass"
    assert dns_server.queries_for(name, "TXT") == 2


def test_domain_that_breaks_after_verification_is_flagged_and_recorded(dns_server, domain):
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    first_verified = domain.first_verified_at

    del dns_server.zone[domain.return_path_host]["MX"]
    check = sending_domain_check(domain=domain, trigger=DomainCheck.Trigger.PERIODIC)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.FAILING
    assert domain.broken_at == check.checked_at
    assert domain.first_verified_at == first_verified
    assert check.is_breakage
    entry = AuditEntry.objects.get(verb="sending_domain.broken", target_id=domain.pk)
    assert entry.details["failing_records"] == ["return_path"]
    assert entry.workspace == domain.workspace

    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED


def test_dns_trouble_never_breaks_a_verified_domain(dns_server, domain):
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    dns_server.zone[domain.return_path_host] = SERVFAIL
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    assert domain.record_states["return_path"]["state"] == "unknown"
    assert domain.record_states["spf"]["state"] == "unknown"


def test_oversized_and_malformed_txt_answers_do_not_crash(dns_server, domain):
    publish(dns_server, domain)
    garbage = (b"\xff\xfe v=DKIM1; p=" + b"\x00\x81" * 100, b"x" * 255, b"y" * 255)
    dns_server.zone[f"esp1._domainkey.{domain.domain}"] = {"TXT": [garbage, "z" * 5000]}
    dns_server.zone[f"_dmarc.{domain.domain}"] = {"TXT": [(b"v=DMARC1; p=\xff\xfe;;;==",)]}
    sending_domain_check(domain=domain)
    found = states(domain)
    assert found["dkim"] == "mismatch"
    assert found["dmarc"] == "mismatch"
    assert all(len(value) <= 401 for value in domain.record_states["dkim:esp1"]["found"])
