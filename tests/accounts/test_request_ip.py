import ipaddress

import pytest

from accounts.request_ip import client_ip
from tests.factories import MembershipFactory

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


def test_forwarded_for_is_ignored_without_a_trusted_proxy():
    meta = {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    assert client_ip(meta, trusted_proxies=[]) == "198.51.100.7"
    assert client_ip(meta, trusted_proxies=PROXIES) == "198.51.100.7"


def test_forwarded_for_is_believed_from_a_trusted_proxy():
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    assert client_ip(meta, trusted_proxies=PROXIES) == "203.0.113.1"


def test_spoofed_leftmost_entries_are_skipped():
    # The client wrote 1.2.3.4 itself; our proxy appended the real address.
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 203.0.113.1"}
    assert client_ip(meta, trusted_proxies=PROXIES) == "203.0.113.1"


def test_chain_of_trusted_proxies_is_walked():
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.1, 10.1.1.1, 10.2.2.2"}
    assert client_ip(meta, trusted_proxies=PROXIES) == "203.0.113.1"


def test_garbage_in_forwarded_for_stops_at_the_last_trusted_hop():
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "203.0.113.1, not-an-ip"}
    assert client_ip(meta, trusted_proxies=PROXIES) == "10.0.0.5"


def test_ipv6_client_behind_proxy():
    meta = {"REMOTE_ADDR": "::1", "HTTP_X_FORWARDED_FOR": "2001:db8::42"}
    assert client_ip(meta, trusted_proxies=PROXIES) == "2001:db8::42"


@pytest.mark.django_db
def test_audit_entries_record_the_client_behind_a_trusted_proxy(client, settings):
    from django.urls import reverse

    from accounts.models import AuditEntry

    settings.TRUSTED_PROXIES = PROXIES
    membership = MembershipFactory(role="owner")
    client.force_login(membership.user)
    client.post(
        reverse(
            "accounts:workspace_settings", kwargs={"workspace_slug": membership.workspace.slug}
        ),
        {"name": "Changed", "postal_address": "", "time_zone": "UTC"},
        REMOTE_ADDR="10.0.0.5",
        HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.77",
    )
    assert AuditEntry.objects.get(verb="workspace.updated").ip == "203.0.113.77"
    client.post(
        reverse(
            "accounts:workspace_settings", kwargs={"workspace_slug": membership.workspace.slug}
        ),
        {"name": "Changed again", "postal_address": "", "time_zone": "UTC"},
        REMOTE_ADDR="198.51.100.9",
        HTTP_X_FORWARDED_FOR="203.0.113.77",
    )
    assert AuditEntry.objects.filter(verb="workspace.updated").first().ip == "198.51.100.9"
