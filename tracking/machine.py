"""Machine opens and clicks: which rule, if any, says a request was not a person's.

Mail is opened and links are followed by machines as much as by people: Apple Mail
Privacy Protection fetches every image on arrival, Gmail's image proxy fetches on delivery
for some accounts, and security gateways (Barracuda, Mimecast, Proofpoint, Microsoft Safe
Links) fetch each link before the person sees the message. Reports count both, and "human"
counts without these. The rules are simple on purpose, each named so that a report can
say why an event was not counted as a person's:

- head_request: a HEAD request (browsers and mail clients GET).
- scanner_user_agent / scanner_network: a known scanner's User-Agent or network
  (tracking/data/scanner_user_agents.txt, scanner_networks.txt).
- apple_mpp_network (opens): fetched from Apple's networks (tracking/data/
  apple_mpp_networks.txt): Mail Privacy Protection's fetch cannot be told from a read.
- gmail_proxy_prefetch (opens): Gmail's image proxy within a minute of sending.
- open_at_delivery / click_at_delivery: sooner after sending than a person could
  (TRACKING_MACHINE_OPEN_SECONDS, TRACKING_MACHINE_CLICK_SECONDS).
- all_links_at_once (clicks): three or more different links within two seconds.

The lists are dated files kept in the repository; they are read once per process.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from django.conf import settings

_DATA = Path(__file__).resolve().parent / "data"
GMAIL_PROXY_AGENT = "googleimageproxy"
GMAIL_PROXY_WINDOW = timedelta(seconds=60)
ALL_LINKS_WINDOW = timedelta(seconds=2)
ALL_LINKS_COUNT = 3


class NetworkSet:
    """Networks as sorted, merged integer ranges: a look-up is one bisect per family."""

    def __init__(self, networks: Sequence[str]) -> None:
        self._ranges: dict[int, tuple[list[int], list[int]]] = {}
        parsed = [ipaddress.ip_network(item, strict=False) for item in networks]
        for version in (4, 6):
            merged = ipaddress.collapse_addresses(n for n in parsed if n.version == version)
            pairs = sorted((int(n.network_address), int(n.broadcast_address)) for n in merged)
            self._ranges[version] = ([a for a, _ in pairs], [b for _, b in pairs])

    def __contains__(self, ip: str | None) -> bool:
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped:
            address = address.ipv4_mapped
        starts, ends = self._ranges[address.version]
        value = int(address)
        at = bisect.bisect_right(starts, value) - 1
        return at >= 0 and value <= ends[at]


def _lines(name: str) -> list[str]:
    """A data file's entries: one a line, "#" starts a comment."""
    text = (_DATA / name).read_text(encoding="utf-8")
    return [entry for line in text.splitlines() if (entry := line.split("#", 1)[0].strip())]


@cache
def apple_mpp_networks() -> NetworkSet:
    return NetworkSet(_lines("apple_mpp_networks.txt"))


@cache
def scanner_networks() -> NetworkSet:
    return NetworkSet(_lines("scanner_networks.txt"))


@cache
def _scanner_agents() -> re.Pattern:
    return re.compile(
        "|".join(re.escape(agent) for agent in _lines("scanner_user_agents.txt")), re.I
    )


def is_scanner_user_agent(user_agent: str) -> bool:
    return bool(user_agent) and _scanner_agents().search(user_agent) is not None


def _sooner_than(occurred_at: datetime, sent_at: datetime | None, seconds: float) -> bool:
    # An event stamped before sent_at (sent_at is written after the hand-over returns)
    # is sooner still.
    return sent_at is not None and occurred_at - sent_at < timedelta(seconds=seconds)


def _all_links_at_once(
    occurred_at: datetime, url: str, recent_clicks: Sequence[tuple[datetime, str]]
) -> bool:
    nearby = {link for at, link in recent_clicks if abs(occurred_at - at) <= ALL_LINKS_WINDOW}
    # Without this click's URL, it is taken as one more link.
    links = len(nearby | {url}) if url else len(nearby) + 1
    return links >= ALL_LINKS_COUNT


def machine_rule(
    *,
    kind: str,
    method: str,
    ip: str | None,
    user_agent: str,
    occurred_at: datetime,
    sent_at: datetime | None,
    recent_clicks: Sequence[tuple[datetime, str]] = (),
    url: str = "",
) -> str:
    """The name of the first rule that judges this open or click a machine's; "" for a
    person. recent_clicks: the delivery's earlier clicks (time, URL) of the last minute;
    url: this click's target, when known."""
    if method.upper() == "HEAD":
        return "head_request"
    if is_scanner_user_agent(user_agent):
        return "scanner_user_agent"
    if ip in scanner_networks():
        return "scanner_network"
    if kind == "open":
        if ip in apple_mpp_networks():
            return "apple_mpp_network"
        if GMAIL_PROXY_AGENT in user_agent.lower() and _sooner_than(
            occurred_at, sent_at, GMAIL_PROXY_WINDOW.total_seconds()
        ):
            return "gmail_proxy_prefetch"
        if _sooner_than(occurred_at, sent_at, settings.TRACKING_MACHINE_OPEN_SECONDS):
            return "open_at_delivery"
        return ""
    if _sooner_than(occurred_at, sent_at, settings.TRACKING_MACHINE_CLICK_SECONDS):
        return "click_at_delivery"
    if _all_links_at_once(occurred_at, url, recent_clicks):
        return "all_links_at_once"
    return ""
