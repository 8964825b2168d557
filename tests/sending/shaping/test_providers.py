"""Destination providers: the consumer table, MX look-ups on the loopback DNS server, the
RecipientDomain cache, and the snapshot tagging each delivery."""

import datetime as dt
import time

import pytest
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Subscription
from sending import providers
from sending.dnsserver import SERVFAIL, TIMEOUT
from sending.models import Delivery, RecipientDomain
from sending.models.shaping import PROVIDERS
from sending.providers import domain_key, provider_of, providers_for_domains, table_provider
from sending.services.deliveries import send_start
from tests.factories import ContactFactory, ContactListFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

GOOGLE_MX = ["1 aspmx.l.google.com.", "5 alt1.aspmx.l.google.com.", "10 aspmx2.googlemail.com."]
M365_MX = ["0 contoso-ltd-com.mail.protection.outlook.com."]


@pytest.mark.parametrize(
    ("domain", "provider"),
    [
        ("gmail.com", "google"),
        ("GoogleMail.COM", "google"),
        ("gmail.com.", "google"),
        ("\uff47\uff4d\uff41\uff49\uff4c.com", "google"),  # full-width: gmail.com after IDNA
        ("yahoo.com", "yahoo"),
        ("yahoo.co.uk", "yahoo"),
        ("yahoo.fr", "yahoo"),
        ("yahoo.com.br", "yahoo"),
        ("ymail.com", "yahoo"),
        ("rocketmail.com", "yahoo"),
        ("aol.com", "yahoo"),
        ("aim.com", "yahoo"),
        ("verizon.net", "yahoo"),
        ("outlook.com", "microsoft"),
        ("hotmail.com", "microsoft"),
        ("hotmail.co.uk", "microsoft"),
        ("Hotmail.FR", "microsoft"),
        ("live.com", "microsoft"),
        ("live.com.au", "microsoft"),
        ("msn.com", "microsoft"),
        ("passport.com", "microsoft"),
        ("icloud.com", "apple"),
        ("me.com", "apple"),
        ("mac.com", "apple"),
        ("gmx.de", "gmx"),
        ("gmx.net", "gmx"),
        ("web.de", "gmx"),
        ("yandex.ru", "yandex"),
        ("yandex.com.tr", "yandex"),
        ("ya.ru", "yandex"),
        ("mail.ru", "mailru"),
        ("inbox.ru", "mailru"),
        ("list.ru", "mailru"),
        ("bk.ru", "mailru"),
        ("internet.ru", "mailru"),
    ],
)
def test_consumer_domains_come_from_the_table_without_dns(domain, provider, dns_server):
    assert provider_of(domain) == provider
    assert dns_server.queries == []


@pytest.mark.parametrize(
    "domain",
    ["live.acme-corp.com", "gmail.company.com", "yahoo.co.jp", "hotmail.example.org", "gmx"],
)
def test_brand_names_inside_other_domains_are_not_consumer_domains(domain):
    assert table_provider(domain_key(domain) or "") is None


def test_domains_are_keyed_in_their_idna_form():
    assert domain_key("Bücher.DE.") == "xn--bcher-kva.de"
    assert domain_key("not a domain@") is None
    assert provider_of("") == "other"


def test_the_built_in_tables_are_well_formed():
    names = {name for name, _ in PROVIDERS}
    for table in (providers.CONSUMER_DOMAINS, dict(providers.MX_SUFFIXES)):
        for name, provider in table.items():
            assert domain_key(name) == name, name
            assert "." in name
            assert not name.startswith(".")
            assert provider in names
    assert set(providers.CONSUMER_BRANDS.values()) <= names


def test_workspace_and_365_domains_are_found_by_their_mx_hosts(dns_server):
    zone = dns_server.zone
    zone["acme-corp.com"] = {"MX": GOOGLE_MX}
    zone["contoso-ltd.com"] = {"MX": M365_MX}
    zone["smallbiz.net"] = {"MX": ["1 mx-biz.mail.am0.yahoodns.net."]}
    zone["family-name.org"] = {"MX": ["10 mx01.mail.icloud.com.", "10 mx02.mail.icloud.com."]}
    zone["firma.de"] = {"MX": ["10 mx00.emig.gmx.net."]}
    zone["kompaniya.ru"] = {"MX": ["10 mx.yandex.net."]}
    zone["vk-team.ru"] = {"MX": ["10 emx.mail.ru."]}
    # A filtering gateway first: the sender talks to it, so it decides.
    zone["filtered.com"] = {"MX": ["10 mx1.pphosted.com.", "20 aspmx.l.google.com."]}
    zone["own-mx.com"] = {"MX": ["10 mail.own-mx.com."]}
    zone[domain_key("bücher-shop.de")] = {"MX": GOOGLE_MX}

    found = providers_for_domains(
        [
            "acme-corp.com",
            "Contoso-Ltd.com",
            "smallbiz.net",
            "family-name.org",
            "firma.de",
            "kompaniya.ru",
            "vk-team.ru",
            "filtered.com",
            "own-mx.com",
            "Bücher-Shop.de",
        ]
    )

    assert found == {
        "acme-corp.com": "google",
        "Contoso-Ltd.com": "microsoft",
        "smallbiz.net": "yahoo",
        "family-name.org": "apple",
        "firma.de": "gmx",
        "kompaniya.ru": "yandex",
        "vk-team.ru": "mailru",
        "filtered.com": "other",
        "own-mx.com": "other",
        "Bücher-Shop.de": "google",
    }
    row = RecipientDomain.objects.get(domain=domain_key("bücher-shop.de"))
    assert row.provider == "google"
    assert row.mx_hosts == [host.split()[1].rstrip(".") for host in GOOGLE_MX]


def test_a_cached_domain_is_not_looked_up_again(dns_server):
    dns_server.zone["acme-corp.com"] = {"MX": GOOGLE_MX}

    assert provider_of("acme-corp.com") == "google"
    assert provider_of("ACME-corp.com") == "google"
    assert providers_for_domains(["acme-corp.com", "gmail.com"]) == {
        "acme-corp.com": "google",
        "gmail.com": "google",
    }

    assert dns_server.queries_for("acme-corp.com", "MX") == 1


def test_domains_without_mx_are_other_and_cached(dns_server):
    dns_server.zone["a-only.com"] = {"A": ["192.0.2.1"]}  # NODATA: mail goes to the A host

    assert providers_for_domains(["a-only.com", "no-such-name.com"]) == {
        "a-only.com": "other",
        "no-such-name.com": "other",
    }
    assert providers_for_domains(["a-only.com", "no-such-name.com"])["a-only.com"] == "other"

    assert dns_server.queries_for("a-only.com") == 1
    assert dns_server.queries_for("no-such-name.com") == 1
    assert set(RecipientDomain.objects.values_list("domain", "provider")) == {
        ("a-only.com", "other"),
        ("no-such-name.com", "other"),
    }


def test_a_domain_is_looked_up_again_after_the_max_age(dns_server, settings):
    settings.PROVIDER_MX_MAX_AGE_SECONDS = 3600
    dns_server.zone["moving.com"] = {"MX": GOOGLE_MX}
    start = timezone.now()
    assert provider_of("moving.com", now=start) == "google"

    dns_server.zone["moving.com"] = {"MX": ["0 moving-com.mail.protection.outlook.com."]}
    assert provider_of("moving.com", now=start + dt.timedelta(seconds=3599)) == "google"
    assert dns_server.queries_for("moving.com") == 1

    later = start + dt.timedelta(seconds=3601)
    assert provider_of("moving.com", now=later) == "microsoft"
    assert dns_server.queries_for("moving.com") == 2
    row = RecipientDomain.objects.get(domain="moving.com")
    assert (row.provider, row.checked_at) == ("microsoft", later)


def test_a_dns_failure_gives_other_and_is_not_stored(dns_server):
    dns_server.zone["broken.com"] = SERVFAIL

    assert provider_of("broken.com") == "other"
    assert not RecipientDomain.objects.filter(domain="broken.com").exists()

    dns_server.zone["broken.com"] = {"MX": GOOGLE_MX}  # repaired: the next send asks again
    assert provider_of("broken.com") == "google"


def test_a_dns_failure_keeps_a_stale_cached_provider(dns_server, settings):
    settings.PROVIDER_MX_MAX_AGE_SECONDS = 60
    checked_at = timezone.now() - dt.timedelta(days=2)
    RecipientDomain.objects.create(domain="stale.com", provider="google", checked_at=checked_at)
    dns_server.zone["stale.com"] = SERVFAIL

    assert provider_of("stale.com") == "google"
    assert dns_server.queries_for("stale.com") >= 1
    assert RecipientDomain.objects.get(domain="stale.com").checked_at == checked_at


def test_without_resolvers_nothing_is_looked_up(dns_server, settings):
    RecipientDomain.objects.create(domain="known.com", provider="microsoft")
    settings.DNS_RESOLVERS = []  # production without named resolvers, or a bare test

    assert providers_for_domains(["known.com", "unknown.com"]) == {
        "known.com": "microsoft",
        "unknown.com": "other",
    }
    assert dns_server.queries == []


def test_reserved_names_are_never_looked_up(dns_server):
    names = ["shop.example", "example.com", "news.example.org", "mail.test", "x.invalid"]

    assert set(providers_for_domains(names).values()) == {"other"}
    assert dns_server.queries == []


def test_look_ups_stop_at_the_time_budget(dns_server, monkeypatch):
    monkeypatch.setattr(providers, "MX_LOOKUP_BUDGET_SECONDS", 0.3)
    dns_server.zone["slow.com"] = TIMEOUT  # each attempt waits DNS_TIMEOUT_SECONDS (0.4 s)
    dns_server.zone["fast.com"] = {"MX": GOOGLE_MX}

    started = time.monotonic()
    found = providers_for_domains(["slow.com", "fast.com"])

    assert time.monotonic() - started < 0.7
    assert found == {"slow.com": "other", "fast.com": "google"}
    assert not RecipientDomain.objects.filter(domain="slow.com").exists()


def test_the_snapshot_tags_every_delivery_with_its_provider(dns_server):
    dns_server.zone["acme-corp.com"] = {"MX": GOOGLE_MX}
    dns_server.zone["contoso-ltd.com"] = {"MX": M365_MX}
    workspace = WorkspaceFactory()
    contact_list = ContactListFactory(workspace=workspace)
    addresses = {
        "ann@gmail.com": "google",
        "bob@Yahoo.CO.UK": "yahoo",
        "cy@acme-corp.com": "google",
        "di@ACME-CORP.com": "google",
        "ed@contoso-ltd.com": "microsoft",
        "fay@hotmail.fr": "microsoft",
        "gus@shop.example": "other",
        "hal@unknown-host.com": "other",
    }
    contacts = [ContactFactory(workspace=workspace, email=address) for address in addresses]
    Subscription.objects.bulk_create(
        Subscription(workspace=workspace, contact=contact, contact_list=contact_list)
        for contact in contacts
    )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        status=Campaign.Status.SCHEDULED,
    )
    campaign.include_lists.add(contact_list)

    send_start(campaign=campaign)

    tagged = dict(Delivery.objects.filter(campaign=campaign).values_list("address", "provider"))
    assert tagged == addresses
    # One look-up per distinct domain, whatever the case of the addresses.
    assert dns_server.queries_for("acme-corp.com", "MX") == 1
