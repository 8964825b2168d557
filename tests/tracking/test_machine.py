"""Machine rules: each fires on its case, by name, and stays quiet for a person's open or
click of the same kind."""

import datetime as dt

import pytest

from tracking.machine import (
    NetworkSet,
    apple_mpp_networks,
    is_scanner_user_agent,
    machine_rule,
    scanner_networks,
)

SENT = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
LATER = SENT + dt.timedelta(hours=3)
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
HOME_IP = "198.51.100.23"  # documentation range: in no vendored list
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


@pytest.fixture(autouse=True)
def _windows(settings):
    settings.TRACKING_MACHINE_OPEN_SECONDS = 2
    settings.TRACKING_MACHINE_CLICK_SECONDS = 10


def rule(**overrides) -> str:
    facts = {
        "kind": "open",
        "method": "GET",
        "ip": HOME_IP,
        "user_agent": OUTLOOK,
        "occurred_at": LATER,
        "sent_at": SENT,
    }
    return machine_rule(**{**facts, **overrides})


def test_a_person_opening_and_clicking_later_is_human():
    assert rule() == ""
    assert rule(kind="click", user_agent=BROWSER) == ""
    assert rule(sent_at=None) == ""  # no send time: no timing rule


def test_head_requests_are_machines():
    assert rule(method="HEAD") == "head_request"
    assert rule(kind="click", method="head", user_agent=BROWSER) == "head_request"


@pytest.mark.parametrize(
    "agent",
    [
        "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))",
        "Mimecast-URL-Protect/1.0",
        "Proofpoint URL Defense",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) BingPreview/1.0b",
        "Google-Safety",
        "python-requests/2.32.3",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36",
    ],
)
def test_scanner_user_agents_are_machines(agent):
    assert is_scanner_user_agent(agent)
    assert rule(kind="click", user_agent=agent) == "scanner_user_agent"
    assert rule(user_agent=agent) == "scanner_user_agent"


def test_ordinary_browsers_and_mail_clients_are_not_scanners():
    for agent in (BROWSER, OUTLOOK, "Mozilla/5.0", "Thunderbird/128.0", ""):
        assert not is_scanner_user_agent(agent)


@pytest.mark.parametrize(
    "ip",
    ["64.235.150.9", "91.220.42.17", "148.163.140.1", "40.107.22.33", "::ffff:64.235.150.9"],
)
def test_scanner_networks_are_machines(ip):
    assert ip in scanner_networks()
    assert rule(kind="click", ip=ip, user_agent=BROWSER) == "scanner_network"
    assert rule(ip=ip) == "scanner_network"


@pytest.mark.parametrize("ip", ["17.58.101.4", "172.224.226.5", "2a04:4e41:4e02:12::7"])
def test_opens_from_apple_networks_are_mail_privacy_protection(ip):
    assert ip in apple_mpp_networks()
    assert rule(ip=ip, user_agent="Mozilla/5.0") == "apple_mpp_network"


def test_clicks_from_apple_private_relay_are_people():
    """Private Relay also carries people's own Safari browsing."""
    assert rule(kind="click", ip="172.224.226.5", user_agent=BROWSER) == ""


def test_gmail_proxy_within_a_minute_of_sending_is_a_prefetch():
    assert rule(user_agent=GMAIL_PROXY, occurred_at=SENT + dt.timedelta(seconds=45)) == (
        "gmail_proxy_prefetch"
    )
    # Later, the proxy fetches because a person opened the message.
    assert rule(user_agent=GMAIL_PROXY, occurred_at=SENT + dt.timedelta(seconds=61)) == ""


def test_an_open_as_the_message_arrives_is_a_machine():
    assert rule(occurred_at=SENT + dt.timedelta(seconds=1)) == "open_at_delivery"
    assert rule(occurred_at=SENT - dt.timedelta(seconds=1)) == "open_at_delivery"
    assert rule(occurred_at=SENT + dt.timedelta(seconds=3)) == ""


def test_the_open_window_is_a_setting(settings):
    settings.TRACKING_MACHINE_OPEN_SECONDS = 30
    assert rule(occurred_at=SENT + dt.timedelta(seconds=20)) == "open_at_delivery"


def test_a_click_as_the_message_arrives_is_a_machine(settings):
    click = {"kind": "click", "user_agent": BROWSER}
    assert rule(**click, occurred_at=SENT + dt.timedelta(seconds=9)) == "click_at_delivery"
    assert rule(**click, occurred_at=SENT + dt.timedelta(seconds=11)) == ""
    settings.TRACKING_MACHINE_CLICK_SECONDS = 60
    assert rule(**click, occurred_at=SENT + dt.timedelta(seconds=30)) == "click_at_delivery"


def test_three_links_within_two_seconds_are_a_scanner():
    at = LATER
    earlier = [
        (at - dt.timedelta(seconds=1.5), "https://a.example/"),
        (at - dt.timedelta(seconds=0.5), "https://b.example/"),
    ]
    click = {"kind": "click", "user_agent": BROWSER, "occurred_at": at}
    assert rule(**click, recent_clicks=earlier, url="https://c.example/") == "all_links_at_once"
    assert rule(**click, recent_clicks=earlier) == "all_links_at_once"  # URL unknown: a third


def test_a_person_clicking_links_one_after_another_is_human():
    at = LATER
    click = {"kind": "click", "user_agent": BROWSER, "occurred_at": at}
    spread = [
        (at - dt.timedelta(seconds=20), "https://a.example/"),
        (at - dt.timedelta(seconds=8), "https://b.example/"),
    ]
    assert rule(**click, recent_clicks=spread, url="https://c.example/") == ""
    # The same link clicked again quickly is two links, not three.
    again = [
        (at - dt.timedelta(seconds=1), "https://a.example/"),
        (at - dt.timedelta(seconds=0.5), "https://b.example/"),
    ]
    assert rule(**click, recent_clicks=again, url="https://a.example/") == ""


def test_network_sets_match_ranges_and_families():
    networks = NetworkSet(["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/30", "2001:db8::/32"])
    assert "10.200.1.1" in networks
    assert "192.0.2.3" in networks
    assert "192.0.2.4" not in networks
    assert "9.255.255.255" not in networks
    assert "2001:db8:1::1" in networks
    assert "2001:db9::1" not in networks
    assert "not an address" not in networks
    assert None not in networks
