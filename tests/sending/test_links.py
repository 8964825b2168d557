"""Tracked links: the token format, forgery, key rotation, rewriting."""

import base64

import pytest
from django.utils.crypto import salted_hmac

from sending import links

BASE = "https://esp.example"


def test_click_token_round_trips_the_delivery_and_its_own_target():
    url = "https://shop.example/p?id=7&ref=news&name=Zoë"
    token = links.click_token(delivery_id=123456, url=url)
    assert links.click_read(token) == (123456, url)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # mac changed
        lambda t: "1" + t,  # delivery id changed
        lambda t: t.replace(".", "..", 1),
        lambda t: t[: len(t) // 2],
        lambda t: "",
        lambda t: "x" * 5000,
    ],
)
def test_forged_or_truncated_click_tokens_are_refused(mangle):
    token = links.click_token(delivery_id=42, url="https://shop.example/")
    assert links.click_read(mangle(token)) is None


def test_a_click_token_is_not_an_open_token_and_back():
    click = links.click_token(delivery_id=42, url="https://shop.example/")
    assert links.open_read(click) is None
    opened = links.open_token(delivery_id=42)
    assert links.open_read(opened) == 42
    assert links.click_read(opened + ".aGk") is None


def test_tokens_are_signed_as_djangos_salted_hmac_so_links_in_sent_mail_keep_working():
    """The MAC is computed without salted_hmac (its key is derived once), and must stay
    the same bytes: mail already delivered carries tokens signed the older way."""
    url = "https://shop.example/p?id=7"
    value, _, mac = links.click_token(delivery_id=77, url=url).rpartition(".")
    expected = salted_hmac("sending.links.click", value, algorithm="sha256").digest()[:16]
    assert base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)) == expected
    value, _, mac = links.open_token(delivery_id=77).partition(".")
    expected = salted_hmac("sending.links.open", value, algorithm="sha256").digest()[:16]
    assert base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)) == expected


def test_tokens_survive_key_rotation_with_fallbacks(settings):
    token = links.click_token(delivery_id=9, url="https://shop.example/")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-key-" + "x" * 50
    assert links.click_read(token) == (9, "https://shop.example/")
    settings.SECRET_KEY_FALLBACKS = []
    assert links.click_read(token) is None


def test_rewrite_wraps_http_links_and_leaves_compliance_and_mailto_alone():
    html = (
        '<a href="https://shop.example/a?x=1&amp;y=2">A</a>'
        "<a class='b' href='http://shop.example/b'>B</a>"
        f'<a href="{BASE}/u/tok">Unsubscribe</a>'
        '<a href="mailto:help@shop.example">Mail</a>'
        '<a href="#top">Top</a>'
    )
    seen = []

    def rewrite(url):
        seen.append(url)
        return f"{BASE}/c/{len(seen)}?q=1&r=2"

    out = links.links_rewrite(html, rewrite=rewrite, base_url=BASE)
    assert seen == ["https://shop.example/a?x=1&y=2", "http://shop.example/b"]
    assert f'href="{BASE}/c/1?q=1&amp;r=2"' in out
    assert f"href='{BASE}/c/2?q=1&amp;r=2'" in out
    assert f'href="{BASE}/u/tok"' in out
    assert 'href="mailto:help@shop.example"' in out


def test_pixel_goes_before_the_last_body_end():
    out = links.pixel_add("<html><body><p>x</p></body></html>", src=f"{BASE}/o/t.gif")
    assert out.endswith("</body></html>")
    assert f'<img src="{BASE}/o/t.gif" width="1" height="1" alt=""' in out
    assert links.pixel_add("<p>x</p>", src="s").startswith("<p>x</p><img")
