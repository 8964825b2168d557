"""Addresses as contacts store them: domain lower-cased and IDNA-encoded, local part as typed."""

import re
from functools import lru_cache

import idna

_LOCAL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>()\[\],;:\\\"]")
_ASCII_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ASCII_DOMAIN = re.compile(rf"{_ASCII_LABEL}(?:\.{_ASCII_LABEL})+")


class InvalidAddress(ValueError):
    """The text is not an address that mail could be sent to; str() says why."""


def normalize_email(raw: str) -> str:
    """The stored form of an address, or InvalidAddress with a reason a person can act on."""
    text = (raw or "").strip().strip("<>").strip()
    if not text:
        raise InvalidAddress("empty address")
    if len(text) > 320:
        raise InvalidAddress("address longer than 320 characters")
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise InvalidAddress("no @ with a name before it")
    if len(local.encode()) > 64:
        raise InvalidAddress("the part before @ is longer than 64 bytes")
    if _LOCAL_FORBIDDEN.search(local) or local.startswith(".") or local.endswith("."):
        raise InvalidAddress("the part before @ has characters that are not allowed")
    if ".." in local:
        raise InvalidAddress("the part before @ has characters that are not allowed")
    return f"{local}@{_mail_domain(domain.rstrip('.'))}"


@lru_cache(maxsize=100_000)
def _mail_domain(domain: str) -> str:
    """The domain lower-cased and IDNA-encoded (cached: a list holds few distinct domains)."""
    if not domain:
        raise InvalidAddress("no domain after @")
    lowered = domain.lower()
    if lowered.isascii():
        ascii_domain = lowered  # the common case, without the cost of the IDNA codec
        if not _ASCII_DOMAIN.fullmatch(ascii_domain):
            raise InvalidAddress(f"{domain!r} is not a valid domain name")
    else:
        try:
            ascii_domain = idna.encode(lowered, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise InvalidAddress(f"{domain!r} is not a valid domain name") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253:
        raise InvalidAddress(f"{domain!r} is not a valid domain name")
    if labels[-1].isdigit():
        raise InvalidAddress("an IP address is not a mail domain here")
    return ascii_domain


def email_key(address: str) -> str:
    """The case-insensitive identity of a stored address (what uniqueness compares)."""
    return address.lower()
