"""Bad input in the traffic-shaping admin: each refusal shows why and saves nothing, and the
valid case saves. Host addresses come from this machine's kernel and from Redis, as a
worker on each host publishes them (sending/hosts.py)."""

import ipaddress

import pytest
from django.urls import reverse
from django.utils import timezone

from sending import hosts
from sending.models import (
    IpPool,
    ProviderLimit,
    RecipientDomain,
    SendingIp,
    WarmupSchedule,
    WorkspacePool,
)
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

TEST_NET = "192.0.2.55"  # RFC 5737: on no host


def _own_address() -> str:
    return min(
        address
        for address in hosts.local_addresses()
        if not ipaddress.ip_address(address).is_loopback
        and not ipaddress.ip_address(address).is_link_local
    )


@pytest.fixture
def mta2(settings) -> str:
    """A worker host "mta2" (this machine under another name) that published its addresses;
    the admin runs on "web1"."""
    settings.SENDING_HOST_NAME = "mta2"
    hosts.host_addresses_publish()
    settings.SENDING_HOST_NAME = "web1"
    return "mta2"


@pytest.fixture
def pool():
    return IpPool.objects.create(name="Shared A")


def _text(page) -> str:
    return page.content.decode()


# --- sending IPs and their hosts --------------------------------------------------------------


def _ip_post(client, pool, **fields):
    data = {
        "address": TEST_NET,
        "pool": pool.pk,
        "helo_hostname": "mta.example.net",
        "bound_host": "",
        "is_active": "on",
        "state": "warming",
        "warmup_started_on": "",
        **fields,
    }
    return client.post(reverse("admin:sending_sendingip_add"), data)


@pytest.mark.parametrize(
    ("address", "bound_host", "message"),
    [
        (TEST_NET, "", "blank (any host) is only for loopback addresses"),
        (TEST_NET, "mta2", "192.0.2.55 is not an address of host mta2 (its addresses: "),
        ("2001:db8::7", "mta2", "2001:db8::7 is not an address of host mta2"),
        (TEST_NET, "mta9", "No worker on host mta9 has reported its addresses yet: start a"),
        (TEST_NET, "web1", "192.0.2.55 is not an address of host web1"),
        (TEST_NET, "mta 2", "“mta 2” is not a host name"),
        (TEST_NET, "mta2.", "“mta2.” is not a host name"),
        ("192.0.2.300", "mta2", "Enter a valid IPv4 or IPv6 address."),
    ],
)
def test_a_sending_ip_its_host_does_not_have_is_refused(
    operator_client, pool, mta2, address, bound_host, message
):
    page = _ip_post(operator_client, pool, address=address, bound_host=bound_host)
    assert page.status_code == 200
    assert message in _text(page)
    assert not SendingIp.objects.exists()


def test_the_refusal_lists_the_hosts_addresses(operator_client, pool, mta2):
    page = _ip_post(operator_client, pool, bound_host="mta2")
    assert _own_address() in _text(page)


@pytest.mark.parametrize(
    ("address", "bound_host"),
    [
        ("127.0.0.5", ""),  # loopback: any host
        ("::1", ""),
        ("127.0.0.6", "mta9"),  # loopback is on every host, reported or not
        ("own", "mta2"),  # published by mta2's worker
        ("own", "web1"),  # this host: from the kernel
    ],
)
def test_a_sending_ip_on_its_host_saves(operator_client, pool, mta2, address, bound_host):
    address = _own_address() if address == "own" else address
    page = _ip_post(operator_client, pool, address=address, bound_host=bound_host)
    assert page.status_code == 302, _text(page)
    assert SendingIp.objects.get().bound_host == bound_host


def test_an_old_ip_whose_host_is_gone_can_still_be_edited_but_not_moved(operator_client, pool):
    sending_ip = SendingIp.objects.create(
        address=TEST_NET, pool=pool, helo_hostname="old.example.net", bound_host="mta3"
    )
    url = reverse("admin:sending_sendingip_change", args=[sending_ip.pk])
    data = {
        "address": TEST_NET, "pool": pool.pk, "helo_hostname": "new.example.net",
        "bound_host": "mta3", "state": "paused", "warmup_started_on": "",
    }  # fmt: skip
    assert operator_client.post(url, data).status_code == 302  # host and address unchanged
    sending_ip.refresh_from_db()
    assert (sending_ip.helo_hostname, sending_ip.state) == ("new.example.net", "paused")

    page = operator_client.post(url, {**data, "bound_host": "mta4"})
    assert "No worker on host mta4 has reported its addresses yet" in _text(page)
    sending_ip.refresh_from_db()
    assert sending_ip.bound_host == "mta3"


def _pool_post(client, url, ips=(), **fields):
    data = {
        "name": "Pool B",
        "kind": "shared",
        "dedicated_workspace": "",
        "transport": "",
        "warmup_schedule": "",
        "ips-TOTAL_FORMS": str(len(ips)),
        "ips-INITIAL_FORMS": "0",
        "ips-MIN_NUM_FORMS": "0",
        "ips-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for index, (address, bound_host) in enumerate(ips):
        data.update(
            {
                f"ips-{index}-address": address,
                f"ips-{index}-helo_hostname": "mta.example.net",
                f"ips-{index}-bound_host": bound_host,
                f"ips-{index}-is_active": "on",
            }
        )
    return client.post(url, data)


def test_the_pools_ip_inline_refuses_an_address_of_another_host(operator_client, mta2):
    add = reverse("admin:sending_ippool_add")
    page = _pool_post(operator_client, add, ips=[("127.0.0.7", ""), (TEST_NET, "mta2")])
    assert page.status_code == 200
    assert "192.0.2.55 is not an address of host mta2" in _text(page)
    assert not IpPool.objects.exists()
    assert not SendingIp.objects.exists()

    page = _pool_post(operator_client, add, ips=[("127.0.0.7", ""), (_own_address(), "mta2")])
    assert page.status_code == 302, _text(page)
    assert set(IpPool.objects.get().ips.values_list("bound_host", flat=True)) == {"", "mta2"}


# --- overlapping dedicated pools ---------------------------------------------------------------


@pytest.fixture
def acme():
    return WorkspaceFactory(name="Acme")


@pytest.fixture
def globex():
    return WorkspaceFactory(name="Globex")


def test_a_workspace_gets_one_dedicated_pool(operator_client, acme):
    IpPool.objects.create(name="Acme dedicated", kind="dedicated", dedicated_workspace=acme)
    page = _pool_post(
        operator_client,
        reverse("admin:sending_ippool_add"),
        name="Acme second",
        kind="dedicated",
        dedicated_workspace=acme.pk,
    )
    assert "Acme already has a dedicated pool, “Acme dedicated”" in _text(page)
    assert IpPool.objects.count() == 1


def test_a_dedicated_pools_workspace_cannot_send_through_anothers_dedicated_pool(
    operator_client, acme, globex
):
    globex_pool = IpPool.objects.create(
        name="Globex dedicated", kind="dedicated", dedicated_workspace=globex
    )
    WorkspacePool.objects.create(workspace=acme, pool=globex_pool)  # from before the checks
    page = _pool_post(
        operator_client,
        reverse("admin:sending_ippool_add"),
        name="Acme dedicated",
        kind="dedicated",
        dedicated_workspace=acme.pk,
    )
    assert "Acme is assigned to “Globex dedicated”, the dedicated pool of Globex" in _text(page)
    assert not IpPool.objects.filter(name="Acme dedicated").exists()


def test_a_shared_pool_in_use_cannot_become_dedicated_to_one_of_them(
    operator_client, pool, acme, globex
):
    WorkspacePool.objects.create(workspace=acme, pool=pool)
    WorkspacePool.objects.create(workspace=globex, pool=pool)
    url = reverse("admin:sending_ippool_change", args=[pool.pk])
    page = _pool_post(
        operator_client, url, name=pool.name, kind="dedicated", dedicated_workspace=acme.pk
    )
    assert "Other workspaces send through this pool (Globex)" in _text(page)
    pool.refresh_from_db()
    assert pool.kind == "shared"

    WorkspacePool.objects.filter(workspace=globex).delete()
    page = _pool_post(
        operator_client, url, name=pool.name, kind="dedicated", dedicated_workspace=acme.pk
    )
    assert page.status_code == 302, _text(page)
    pool.refresh_from_db()
    assert (pool.kind, pool.dedicated_workspace) == ("dedicated", acme)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "dedicated"}, "A dedicated pool names the workspace it sends for."),
        ({"kind": "shared", "dedicated_workspace": "acme"}, "Only a dedicated pool names a"),
        (
            {"kind": "dedicated", "dedicated_workspace": "acme", "is_default": "on"},
            "The default pool sends for every workspace without a pool: it must be shared.",
        ),
        ({"is_default": "on"}, "“Default” is the default pool already: untick it there first."),
    ],
)
def test_a_pool_of_the_wrong_kind_is_refused(operator_client, acme, fields, message):
    IpPool.objects.create(name="Default", is_default=True)
    if fields.get("dedicated_workspace") == "acme":
        fields = {**fields, "dedicated_workspace": acme.pk}
    page = _pool_post(operator_client, reverse("admin:sending_ippool_add"), **fields)
    assert message in _text(page)
    assert IpPool.objects.count() == 1


def test_a_workspace_is_assigned_only_its_own_dedicated_pool(operator_client, acme, globex, pool):
    acme_pool = IpPool.objects.create(
        name="Acme dedicated", kind="dedicated", dedicated_workspace=acme
    )
    add = reverse("admin:sending_workspacepool_add")
    when = {"assigned_at_0": "2025-01-02", "assigned_at_1": "10:00:00"}
    page = operator_client.post(add, {"workspace": globex.pk, "pool": acme_pool.pk, **when})
    assert "“Acme dedicated” is dedicated to Acme: only that workspace sends through it." in (
        _text(page)
    )
    assert not WorkspacePool.objects.exists()

    page = operator_client.post(add, {"workspace": acme.pk, "pool": acme_pool.pk, **when})
    assert page.status_code == 302, _text(page)
    page = operator_client.post(add, {"workspace": globex.pk, "pool": pool.pk, **when})
    assert page.status_code == 302, _text(page)
    assert dict(WorkspacePool.objects.values_list("workspace__name", "pool__name")) == {
        "Acme": "Acme dedicated",
        "Globex": "Shared A",
    }


# --- recipient domains: a provider set by hand, its MX hosts validated -------------------------


@pytest.mark.parametrize(
    ("domain", "mx_hosts", "message"),
    [
        ("acme-corp.de", "mx 1.acme-corp.de", "“mx 1.acme-corp.de” contains a space"),
        ("acme-corp.de", "*.google.com", "“*.google.com” has a wildcard"),
        ("acme-corp.de", "aspmx.*.google.com", "“aspmx.*.google.com” has a wildcard"),
        ("acme-corp.de", "192.0.2.1", "“192.0.2.1” is an IP address"),
        ("acme-corp.de", "[2001:db8::1]", "“[2001:db8::1]” is an IP address"),
        ("acme-corp.de", "localhost", "“localhost” is not a host name"),
        ("acme-corp.de", "-mx.acme-corp.de", "“-mx.acme-corp.de” is not a host name"),
        ("acme-corp.de", "mx.acme_corp.de", "“mx.acme_corp.de” is not a host name"),
        ("acme-corp.de", "mx.10", "“mx.10” is not a host name"),
        ("not a domain", "", "“not a domain” is not a domain name"),
        ("gmail.com", "", "gmail.com is in the built-in table of consumer domains (google)"),
        ("yahoo.co.uk", "", "yahoo.co.uk is in the built-in table of consumer domains (yahoo)"),
        ("shop.test", "", "shop.test is reserved for documentation and tests"),
        ("news.example.com", "", "news.example.com is reserved for documentation and tests"),
    ],
)
def test_a_bad_recipient_domain_row_is_refused(operator_client, domain, mx_hosts, message):
    page = operator_client.post(
        reverse("admin:sending_recipientdomain_add"),
        {"domain": domain, "provider": "google", "mx_hosts": mx_hosts},
    )
    assert page.status_code == 200
    assert message in _text(page)
    assert not RecipientDomain.objects.exists()


def test_an_operator_sets_a_domains_provider_and_mx_hosts(operator_client):
    page = operator_client.post(
        reverse("admin:sending_recipientdomain_add"),
        {
            "domain": "Acme-Corp.DE.",
            "provider": "google",
            "mx_hosts": "ASPMX.L.Google.com.\nalt1.aspmx.l.google.com, aspmx.l.google.com",
        },
    )
    assert page.status_code == 302, _text(page)
    row = RecipientDomain.objects.get()
    assert (row.domain, row.provider) == ("acme-corp.de", "google")
    assert row.mx_hosts == ["aspmx.l.google.com", "alt1.aspmx.l.google.com"]


def test_an_operator_corrects_a_looked_up_domain(operator_client):
    old = timezone.now() - timezone.timedelta(days=3)
    row = RecipientDomain.objects.create(
        domain="contoso-ltd.com", provider="other", mx_hosts=["mx.gateway.test"], checked_at=old
    )
    url = reverse("admin:sending_recipientdomain_change", args=[row.pk])
    assert "mx.gateway.test" in _text(operator_client.get(url))

    page = operator_client.post(url, {"provider": "microsoft", "mx_hosts": "mx .outlook.com"})
    assert "“mx .outlook.com” contains a space" in _text(page)
    row.refresh_from_db()
    assert row.provider == "other"

    page = operator_client.post(
        url,
        {
            "domain": "evil.example",  # read-only on change: ignored
            "provider": "microsoft",
            "mx_hosts": "contoso-ltd-com.mail.protection.outlook.com",
        },
    )
    assert page.status_code == 302, _text(page)
    row.refresh_from_db()
    assert (row.domain, row.provider) == ("contoso-ltd.com", "microsoft")
    assert row.mx_hosts == ["contoso-ltd-com.mail.protection.outlook.com"]
    assert row.checked_at > old


# --- provider limits and warm-up schedules --------------------------------------------------


def test_negative_provider_limits_are_refused(operator_client):
    limit = ProviderLimit.objects.get(provider="yahoo")
    before = (limit.messages_per_minute, limit.max_connections, limit.messages_per_connection)
    page = operator_client.post(
        reverse("admin:sending_providerlimit_change", args=[limit.pk]),
        {
            "provider": "yahoo",
            "messages_per_minute": "-10",
            "max_connections": "0",
            "messages_per_connection": "20",
        },
    )
    text = _text(page)
    assert "Ensure this value is greater than or equal to 0." in text
    assert "Must be at least 1" in text
    limit.refresh_from_db()
    assert (limit.messages_per_minute, limit.max_connections, limit.messages_per_connection) == (
        before
    )


def test_a_schedule_edited_to_decrease_is_refused(operator_client):
    # Adding a negative or decreasing schedule: tests/sending/shaping/test_warmup.py.
    schedule = WarmupSchedule.objects.create(name="Ramp", daily_caps=[50, 100, 200])
    url = reverse("admin:sending_warmupschedule_change", args=[schedule.pk])
    page = operator_client.post(url, {"name": "Ramp", "daily_caps": "[50, 100, 0]"})
    assert "Day 3&#x27;s cap (0) must be a positive number." in _text(page)
    page = operator_client.post(url, {"name": "Ramp", "daily_caps": "[50, 40]"})
    assert "Day 2&#x27;s cap (40) is lower than day 1&#x27;s (50)" in _text(page)
    page = operator_client.post(url, {"name": "Ramp", "daily_caps": "[50, 1.5]"})
    assert "Day 2&#x27;s cap (1.5) is not a whole number." in _text(page)
    schedule.refresh_from_db()
    assert schedule.daily_caps == [50, 100, 200]

    page = operator_client.post(url, {"name": "Ramp", "daily_caps": "[50, 100, 200, 400]"})
    assert page.status_code == 302
    schedule.refresh_from_db()
    assert schedule.daily_caps == [50, 100, 200, 400]
