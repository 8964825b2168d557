"""Destination providers: which mailbox provider receives a recipient domain's mail.

Limits and warm-up caps are kept per provider (Gmail judges a sender apart from Yahoo),
so every delivery is tagged with one of the providers in `sending.models.shaping.PROVIDERS`:

1. a maintained table of consumer domains (gmail.com, yahoo.co.uk, hotmail.fr, ...);
2. for other domains, their MX hosts: a company on Google Workspace or Microsoft 365 is
   received by Google's or Microsoft's servers, and judged by them;
3. else "other".

MX answers are kept in RecipientDomain and looked up again when older than
PROVIDER_MX_MAX_AGE_SECONDS. MX look-ups go through the app's resolver and happen only
when settings.DNS_RESOLVERS is set: the tests and `make run` point it at a loopback DNS
server, so no query leaves the machine; a production deployment names its resolvers
there. Without it, unknown domains are "other" (and rows already cached are used).
A DNS failure (SERVFAIL, timeout) gives "other" (or the stale cached provider) and is
not stored, so the next send asks again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait

import idna
from django.conf import settings
from django.utils import timezone

from sending.models import RecipientDomain
from sending.resolver import DnsClient, Lookup, Status

OTHER = "other"

# Consumer domains, exactly.
CONSUMER_DOMAINS: dict[str, str] = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "ymail.com": "yahoo",
    "rocketmail.com": "yahoo",
    "aol.com": "yahoo",
    "aim.com": "yahoo",
    "verizon.net": "yahoo",
    "msn.com": "microsoft",
    "passport.com": "microsoft",
    "windowslive.com": "microsoft",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
    "web.de": "gmx",
    "ya.ru": "yandex",
    "mail.ru": "mailru",
    "inbox.ru": "mailru",
    "list.ru": "mailru",
    "bk.ru": "mailru",
    "internet.ru": "mailru",
}

# Brands whose mail service answers for the brand name under many country suffixes:
# yahoo.fr, yahoo.co.uk, hotmail.de, live.com.au, gmx.at, yandex.com.tr, ...
CONSUMER_BRANDS: dict[str, str] = {
    "yahoo": "yahoo",
    "aol": "yahoo",
    "hotmail": "microsoft",
    "outlook": "microsoft",
    "live": "microsoft",
    "gmx": "gmx",
    "yandex": "yandex",
}

# Brand names under a suffix that belong to someone else: Yahoo! Japan runs its own mail.
NOT_CONSUMER_DOMAINS = frozenset({"yahoo.co.jp"})

# Second-level labels that registries use under country codes (co.uk, com.br, ne.jp).
_REGISTRY_LABELS = frozenset({"co", "com", "net", "org", "ne", "or", "gen"})

# MX host suffixes (the host itself or any name under it) of the providers' servers.
MX_SUFFIXES: list[tuple[str, str]] = [
    ("google.com", "google"),  # aspmx.l.google.com, alt1.aspmx.l.google.com, smtp.google.com
    ("googlemail.com", "google"),  # aspmx2.googlemail.com
    ("mail.protection.outlook.com", "microsoft"),  # Microsoft 365 tenants
    ("olc.protection.outlook.com", "microsoft"),  # Outlook.com and its custom domains
    ("yahoodns.net", "yahoo"),  # Yahoo and AOL, incl. Yahoo Small Business
    ("mail.icloud.com", "apple"),  # iCloud+ custom domains
    ("gmx.net", "gmx"),
    ("web.de", "gmx"),
    ("yandex.net", "yandex"),  # Yandex 360 for business
    ("yandex.ru", "yandex"),
    ("mail.ru", "mailru"),  # VK WorkMail / Mail.ru for business
]

# Names reserved for documentation and tests (RFC 2606, RFC 6761): no mailbox provider
# receives their mail, so they are never looked up.
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})
RESERVED_TLDS = (".example", ".test", ".invalid", ".localhost")

# Distinct domains of one send are thousands at most: looked up on this many threads,
# and for at most this long in all (a domain not answered by then is "other", not stored).
MX_LOOKUP_THREADS = 32
MX_LOOKUP_BUDGET_SECONDS = 10.0


def domain_key(domain: str) -> str | None:
    """'Bücher.DE.' -> 'xn--bcher-kva.de', the form stored and matched; None if invalid."""
    text = (domain or "").strip().rstrip(".").lower()
    if not text or "@" in text:
        return None
    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def _is_country_suffix(rest: str) -> bool:
    """'fr', 'com', 'co.uk', 'com.br': a registry suffix, not somebody's domain."""
    labels = rest.split(".")
    if len(labels) == 1:
        return labels[0].isalpha() or labels[0].startswith("xn--")
    return (
        len(labels) == 2
        and labels[0] in _REGISTRY_LABELS
        and len(labels[1]) == 2
        and labels[1].isalpha()
    )


def table_provider(key: str) -> str | None:
    """The provider of a consumer domain from the built-in table, else None."""
    if key in NOT_CONSUMER_DOMAINS:
        return None
    if key in CONSUMER_DOMAINS:
        return CONSUMER_DOMAINS[key]
    brand, _, rest = key.partition(".")
    if brand in CONSUMER_BRANDS and rest and _is_country_suffix(rest):
        return CONSUMER_BRANDS[brand]
    return None


def is_reserved(key: str) -> bool:
    """A name under .test, .example, example.com, ...: no provider, never looked up."""
    parent = key.split(".", key.count(".") - 1)[-1]  # the last two labels
    return parent in RESERVED_DOMAINS or ("." + key).endswith(RESERVED_TLDS)


def mx_host_provider(host: str) -> str:
    host = host.rstrip(".").lower()
    for suffix, provider in MX_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return provider
    return OTHER


def mx_provider(mx_records: list[tuple[int, str]]) -> str:
    """The provider of the most preferred MX hosts (a filtering gateway in front of
    Google is what the sender talks to, so it decides: "other")."""
    hosts = [(preference, host) for preference, host in mx_records if host]
    if not hosts:
        return OTHER
    best = min(preference for preference, _ in hosts)
    found = [mx_host_provider(host) for preference, host in hosts if preference == best]
    return next((provider for provider in found if provider != OTHER), OTHER)


def provider_of(domain: str, *, now: dt.datetime | None = None) -> str:
    """The provider of one recipient domain (see providers_for_domains)."""
    return providers_for_domains([domain], now=now)[domain]


def providers_for_domains(
    domains: Iterable[str], *, now: dt.datetime | None = None
) -> dict[str, str]:
    """Each given domain (as given) -> its provider: table, then cached MX, then MX look-ups
    (concurrent, within MX_LOOKUP_BUDGET_SECONDS), answers stored in RecipientDomain."""
    now = now or timezone.now()
    given = list(dict.fromkeys(domains))
    keys = {domain: domain_key(domain) for domain in given}
    found: dict[str, str] = {}
    unknown: set[str] = set()
    for key in set(keys.values()):
        if key is None or is_reserved(key):
            continue
        provider = table_provider(key)
        if provider is not None:
            found[key] = provider
        else:
            unknown.add(key)
    if unknown:
        found.update(_cached_or_looked_up(unknown, now))
    return {domain: found.get(key, OTHER) if key else OTHER for domain, key in keys.items()}


def _cached_or_looked_up(keys: set[str], now: dt.datetime) -> dict[str, str]:
    max_age = dt.timedelta(seconds=settings.PROVIDER_MX_MAX_AGE_SECONDS)
    cached = {
        row.domain: row
        for row in RecipientDomain.objects.filter(domain__in=keys).only(
            "domain", "provider", "checked_at"
        )
    }
    found = {key: row.provider for key, row in cached.items()}
    due = sorted(key for key in keys if key not in cached or cached[key].checked_at < now - max_age)
    if not due or not settings.DNS_RESOLVERS:
        return found
    answers = _mx_lookups(due)
    rows = []
    for key in due:
        lookup = answers.get(key)
        if lookup is None or lookup.status in (Status.ERROR, Status.CNAME_LOOP):
            continue  # no answer: keep what is known, ask again next time
        records = [
            (record.preference, record.exchange.to_text().rstrip(".").lower())
            for record in lookup.records
        ]
        records.sort()
        provider = mx_provider(records)
        found[key] = provider
        rows.append(
            RecipientDomain(
                domain=key,
                provider=provider,
                mx_hosts=[host for _, host in records if host],
                checked_at=now,
            )
        )
    if rows:
        # Sorted by domain: concurrent sends upsert overlapping rows in one order, so that
        # neither waits for a lock the other holds.
        RecipientDomain.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["domain"],
            update_fields=["provider", "mx_hosts", "checked_at"],
        )
    return found


def _mx_lookups(keys: list[str]) -> dict[str, Lookup]:
    """MX answers of `keys`, those that came within the budget."""

    def lookup(key: str) -> Lookup:
        return DnsClient().lookup(key + ".", "MX")

    executor = ThreadPoolExecutor(max_workers=min(MX_LOOKUP_THREADS, len(keys)))
    futures = {executor.submit(lookup, key): key for key in keys}
    done, _ = wait(futures, timeout=MX_LOOKUP_BUDGET_SECONDS)
    # Threads still waiting end by their own DNS timeout; nobody waits for them.
    executor.shutdown(wait=False, cancel_futures=True)
    return {futures[future]: future.result() for future in done if future.exception() is None}
