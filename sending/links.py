"""Tracked links and the open pixel: the writer owns the format, tracking imports it to
read them. A leaf module: no model imports.

A click token carries the delivery and the target URL itself, so that a link whose URL
holds merge tags keeps each recipient's own target, and no link table is needed:

    <delivery id, base 36>.<url, base64url>.<HMAC-SHA256, 16 bytes, base64url>

The HMAC uses a key derived from SECRET_KEY for this purpose alone; reading tries
SECRET_KEY_FALLBACKS too, so rotating the key keeps links in old mail working. Reading makes
no database query: a forged token is refused before anything is looked up.
"""

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from functools import lru_cache
from html import escape, unescape

from django.conf import settings

from compliance.tokens import base36

CLICK_PATH = "/c/{token}"
OPEN_PATH = "/o/{token}.gif"
_CLICK_SALT = "sending.links.click"
_OPEN_SALT = "sending.links.open"
_MAC_BYTES = 16
_MAX_TOKEN = 4096
_HREF = re.compile(r"""(<a\b[^>]*?\shref\s*=\s*)(["'])(.*?)\2""", re.I | re.S)
_BODY_END = re.compile(r"</body\s*>", re.I)
# Links that must reach their target untouched: our own compliance pages.
_UNTRACKED_PATHS = ("/u/", "/p/", "/v/")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=16)
def _key(salt: str, secret: str) -> bytes:
    """Django's salted_hmac key for this salt and secret (derived once, not per token)."""
    return hashlib.sha256((salt + secret).encode()).digest()


def _mac(salt: str, value: str, secret: str | None = None) -> bytes:
    """salted_hmac(salt, value, secret, algorithm="sha256"), cut to _MAC_BYTES: the
    endpoints check one per request, and deriving the key each time cost a third of it."""
    key = _key(salt, settings.SECRET_KEY if secret is None else secret)
    return hmac.digest(key, value.encode(), "sha256")[:_MAC_BYTES]


def _verified(salt: str, value: str, mac_text: str) -> bool:
    try:
        given = _unb64(mac_text)
    except (binascii.Error, ValueError):
        return False
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        if hmac.compare_digest(given, _mac(salt, value, secret)):
            return True
    return False


def click_token(*, delivery_id: int, url: str) -> str:
    value = f"{base36(delivery_id)}.{_b64(url.encode())}"
    return f"{value}.{_b64(_mac(_CLICK_SALT, value))}"


def click_read(token: str) -> tuple[int, str] | None:
    """(delivery id, target URL) of a genuine click token; None otherwise."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or token.count(".") != 2:
        return None
    value, _, mac_text = token.rpartition(".")
    if not _verified(_CLICK_SALT, value, mac_text):
        return None
    delivery_text, _, url_text = value.partition(".")
    try:
        return int(delivery_text, 36), _unb64(url_text).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def open_token(*, delivery_id: int) -> str:
    value = base36(delivery_id)
    return f"{value}.{_b64(_mac(_OPEN_SALT, value))}"


def open_read(token: str) -> int | None:
    if not isinstance(token, str) or len(token) > 64 or token.count(".") != 1:
        return None
    value, _, mac_text = token.partition(".")
    if not _verified(_OPEN_SALT, value, mac_text):
        return None
    try:
        return int(value, 36)
    except ValueError:
        return None


def tracked_url(*, base_url: str, delivery_id: int, url: str) -> str:
    return base_url + CLICK_PATH.format(token=click_token(delivery_id=delivery_id, url=url))


def pixel_url(*, base_url: str, delivery_id: int) -> str:
    return base_url + OPEN_PATH.format(token=open_token(delivery_id=delivery_id))


def is_trackable(url: str, *, base_url: str) -> bool:
    """http(s) links, except our own unsubscribe, preference and web-version pages."""
    lowered = url.lower()
    if not lowered.startswith(("http://", "https://")):
        return False
    return not any(url.startswith(base_url + path) for path in _UNTRACKED_PATHS)


def links_rewrite(html: str, *, rewrite: Callable[[str], str], base_url: str) -> str:
    """Every trackable `<a href>` of html pointed at rewrite(target)."""

    def replace(match: re.Match) -> str:
        target = unescape(match.group(3)).strip()
        if not is_trackable(target, base_url=base_url):
            return match.group(0)
        quote = match.group(2)
        return f"{match.group(1)}{quote}{escape(rewrite(target))}{quote}"

    return _HREF.sub(replace, html)


def pixel_add(html: str, *, src: str) -> str:
    """The open pixel, just before </body> (or at the end)."""
    pixel = (
        f'<img src="{escape(src)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + pixel
    at = ends[-1].start()
    return html[:at] + pixel + html[at:]
