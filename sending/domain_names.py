"""Domain names as people type them -> the ASCII (IDNA) form stored and queried."""

import ipaddress
import re

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidDomain(ValueError):
    pass


def domain_normalize(value: str) -> str:
    """'Bücher.Example.' -> 'xn--bcher-kva.example'; raises InvalidDomain with a clear reason."""
    text = (value or "").strip().rstrip(".").lower()
    if not text:
        raise InvalidDomain("Enter a domain name, such as news.example.com.")
    if "@" in text or "/" in text or ":" in text or " " in text:
        raise InvalidDomain("Enter only the domain name, without an address, scheme or path.")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        raise InvalidDomain("Enter a domain name, not an IP address.")
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise InvalidDomain(f"This is not a valid domain name ({error}).") from None
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise InvalidDomain("Enter a full domain name with a dot, such as example.com.")
    if len(ascii_name) > 253:
        raise InvalidDomain("This domain name is longer than 253 characters.")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidDomain(
                f"“{label}” is not a valid part of a domain name: use letters, digits and "
                "hyphens, at most 63 characters, not starting or ending with a hyphen."
            )
    if labels[-1].isdigit():
        raise InvalidDomain("The last part of a domain name cannot be a number.")
    return ascii_name


def domain_display(ascii_name: str) -> str:
    """The Unicode form for people; the ASCII form when it does not decode."""
    try:
        return idna.decode(ascii_name)
    except idna.IDNAError:
        return ascii_name


def is_subdomain(child: str, parent: str) -> bool:
    return child == parent or child.endswith("." + parent)
