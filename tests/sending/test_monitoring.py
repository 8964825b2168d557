"""Blocklist (DNSBL) and PTR monitoring against zones on the loopback DNS server."""

import pytest

from accounts.models import AuditEntry
from sending.models import DnsblListing, DnsblZone, SendingIp
from sending.services.domains import sending_domain_add
from sending.services.monitoring import dnsbl_check_all, sending_ip_ptr_check
from tests.factories import WorkspaceFactory
from tests.sending.conftest import PLATFORM_IP

pytestmark = pytest.mark.django_db

ZONE = "bl.test.example"


@pytest.fixture
def ip_zone(db) -> DnsblZone:
    return DnsblZone.objects.create(
        name="Test BL", zone=ZONE, kind="ip", listing_codes=["127.0.0.2"], is_enabled=True
    )


def test_presets_are_offered_and_none_is_enabled():
    presets = DnsblZone.objects.filter(is_preset=True)
    assert {z.zone for z in presets} >= {
        "zen.spamhaus.org",
        "dbl.spamhaus.org",
        "b.barracudacentral.org",
        "bl.spamcop.net",
        "multi.surbl.org",
    }
    assert not presets.filter(is_enabled=True).exists()
    zen = presets.get(zone="zen.spamhaus.org")
    assert zen.is_listing_code("127.0.0.2")
    assert not zen.is_listing_code("127.255.255.254")


def test_listed_ip_is_stored_with_codes_and_reason_and_alerts_operators(
    dns_server, ip_zone, platform_pool, settings, smtp_sink, django_capture_on_commit_callbacks
):
    settings.ADMINS = [("Operators", "ops@example.com")]
    SendingIp.objects.create(address="198.51.100.8", pool=platform_pool, helo_hostname="mta2")
    dns_server.zone[f"7.100.51.198.{ZONE}"] = {
        "A": ["127.0.0.2"],
        "TXT": ["Listed for spam, see https://bl.test.example/lookup"],
    }
    with django_capture_on_commit_callbacks(execute=True):
        new = dnsbl_check_all()
    assert [listing.subject for listing in new] == [PLATFORM_IP]
    listing = DnsblListing.objects.get()  # 198.51.100.8 is not listed
    assert listing.return_codes == ["127.0.0.2"]
    assert listing.reason.startswith("Listed for spam")
    assert listing.sending_ip.address == PLATFORM_IP
    assert not listing.is_acknowledged
    assert listing.is_open
    assert dns_server.queries_for(f"8.100.51.198.{ZONE}", "A") == 1
    (alert,) = smtp_sink.to("ops@example.com")
    assert f"{PLATFORM_IP} is listed on Test BL" in alert["Subject"]
    assert AuditEntry.objects.filter(verb="dnsbl.listed").count() == 1

    # Seen again: no second listing, no second alert. Gone: the listing closes.
    with django_capture_on_commit_callbacks(execute=True):
        assert dnsbl_check_all() == []
    assert len(smtp_sink.messages) == 1
    del dns_server.zone[f"7.100.51.198.{ZONE}"]
    dnsbl_check_all()
    listing.refresh_from_db()
    assert listing.delisted_at is not None


def test_answer_outside_the_listing_codes_is_an_error_not_a_listing(
    dns_server, ip_zone, platform_pool
):
    dns_server.zone[f"7.100.51.198.{ZONE}"] = {"A": ["127.255.255.254"]}
    assert dnsbl_check_all() == []
    assert not DnsblListing.objects.exists()
    ip_zone.refresh_from_db()
    assert "127.255.255.254" in ip_zone.last_error
    assert "not a listing code" in ip_zone.last_error


def test_disabled_zones_are_never_queried(dns_server, ip_zone, platform_pool):
    ip_zone.is_enabled = False
    ip_zone.save()
    dnsbl_check_all()
    assert dns_server.queries == []


def test_sending_domain_is_checked_on_domain_zones(dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    DnsblZone.objects.create(
        name="Test DBL", zone="dbl.test.example", kind="domain", listing_bitmask=8 | 16,
        is_enabled=True,
    )  # fmt: skip
    dns_server.zone["news.example.com.dbl.test.example"] = {"A": ["127.0.0.24"]}
    (listing,) = dnsbl_check_all()
    assert listing.sending_domain == domain
    assert listing.return_codes == ["127.0.0.24"]
    entry = AuditEntry.objects.get(verb="dnsbl.listed")
    assert entry.workspace == domain.workspace


def test_ptr_forward_confirmed(dns_server, platform_pool):
    sending_ip = SendingIp.objects.get(address=PLATFORM_IP)
    dns_server.zone["7.100.51.198.in-addr.arpa"] = {"PTR": ["mta1.testserver."]}
    dns_server.zone["mta1.testserver"] = {"A": [PLATFORM_IP]}
    sending_ip_ptr_check(sending_ip=sending_ip)
    assert (sending_ip.ptr_state, sending_ip.ptr_names) == ("pass", ["mta1.testserver"])


def test_ptr_missing_or_not_confirmed(dns_server, platform_pool):
    sending_ip = SendingIp.objects.get(address=PLATFORM_IP)
    sending_ip_ptr_check(sending_ip=sending_ip)
    assert sending_ip.ptr_state == "missing"
    dns_server.zone["7.100.51.198.in-addr.arpa"] = {"PTR": ["mta1.testserver."]}
    dns_server.zone["mta1.testserver"] = {"A": ["203.0.113.1"]}
    sending_ip_ptr_check(sending_ip=sending_ip)
    assert sending_ip.ptr_state == "mismatch"
    assert "does not resolve back" in sending_ip.ptr_detail
    dns_server.zone["7.100.51.198.in-addr.arpa"] = {"PTR": ["other.testserver."]}
    dns_server.zone["other.testserver"] = {"A": [PLATFORM_IP]}
    sending_ip_ptr_check(sending_ip=sending_ip)
    assert sending_ip.ptr_state == "mismatch"
    assert "differs from the HELO name mta1.testserver" in sending_ip.ptr_detail


def test_operator_sees_ptr_and_listings_in_the_admin(operator_client, dns_server, platform_pool):
    sending_ip = SendingIp.objects.get(address=PLATFORM_IP)
    response = operator_client.post(
        "/admin/sending/sendingip/",
        {"action": "check_ptr", "_selected_action": [sending_ip.pk]},
        follow=True,
    )
    assert response.status_code == 200
    sending_ip.refresh_from_db()
    assert sending_ip.ptr_state == "missing"
    page = operator_client.get("/admin/sending/sendingip/").content.decode()
    assert PLATFORM_IP in page
    assert "missing" in page
    assert operator_client.get("/admin/sending/dnsbllisting/").status_code == 200
    assert operator_client.get("/admin/sending/dnsblzone/").status_code == 200
    assert operator_client.get("/admin/sending/ippool/").status_code == 200
