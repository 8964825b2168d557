"""`manage.py domain_check` against any domain, through a given nameserver."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sending.dkim import dkim_key_generate, dkim_record_value
from tests.sending.conftest import PLATFORM_IP

pytestmark = pytest.mark.django_db


def _run(*args) -> dict:
    out = StringIO()
    call_command("domain_check", *args, stdout=out)
    text = out.getvalue().strip()
    assert "\n" not in text  # one JSON object
    return json.loads(text)


def test_command_reports_every_record_of_a_foreign_domain(dns_server, platform_pool, settings):
    settings.DNS_RESOLVERS = ["127.0.0.1:9"]  # --nameserver must win over settings
    pair = dkim_key_generate("rsa")
    dns_server.zone.update(
        {
            "sel1._domainkey.example.org": {
                "TXT": [dkim_record_value(algorithm="rsa", public_b64=pair.public_b64)]
            },
            "example.org": {"TXT": ["v=spf1 include:_spf.example.org -all"]},
            "_spf.example.org": {"TXT": [f"v=spf1 ip4:{PLATFORM_IP} -all"]},
            "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; rua=mailto:r@example.org"]},
        }
    )
    report = _run("Example.ORG", "--selector", "sel1", "--nameserver", dns_server.address)
    assert report["domain"] == "example.org"
    assert report["ours"] is False
    assert report["dkim"] == {"sel1": {"state": "pass", "key_bits": 2048}}
    assert report["spf"] == {"state": "pass", "lookups": 1, "platform_ips": {PLATFORM_IP: "pass"}}
    assert report["dmarc"]["policy"] == "reject"
    assert report["dmarc"]["rua"] == ["mailto:r@example.org"]
    assert report["records"]["dmarc"]["state"] == "pass"


def test_command_reports_missing_and_too_many_lookups(dns_server, platform_pool):
    names = [f"n{i}.example.net" for i in range(11)]
    dns_server.zone["example.net"] = {"TXT": ["v=spf1 " + " ".join(f"a:{n}" for n in names)]}
    for name in names:
        dns_server.zone[name] = {"A": ["203.0.113.1"]}
    report = _run("example.net", "--selector", "nope", "--nameserver", dns_server.address)
    assert report["dkim"]["nope"]["state"] == "missing"
    assert report["dmarc"]["state"] == "missing"
    assert report["spf"]["state"] == "mismatch"
    assert "too many DNS lookups" in report["records"]["spf"]["detail"]


def test_command_refuses_an_invalid_domain():
    with pytest.raises(CommandError, match="not a valid"):
        call_command("domain_check", "bad_label.example")
