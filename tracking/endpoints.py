"""The open pixel and click redirects: what each request is answered, from its WSGI environ.

These are the busiest URLs of the platform and the least interesting: no session, CSRF,
authentication, messages or templates, and no database query. The token is checked first
(an HMAC, sending/links.py): a forged or mangled one is told nothing (the pixel is always
the GIF; a link answers 404). A genuine one's hit goes to the node's spool
(tracking/spool.py) before the answer, and from there to the database; the delivery's
existence and state and the campaign's tracking switches are applied by the drain that
stores it (tracking/ingest.py). So a link whose delivery was deleted (with its campaign)
still takes the reader to the target its token signs, and nothing is kept of the click:
mail already delivered keeps working links, and no unsigned target is ever followed. A
token naming a delivery that was never made (an id above the newest) answers 404.

`tracking_answer` works on the environ alone, so that it can run both in front of Django
(tracking/middleware.py: the WSGI entry point answers these paths before Django builds a
request) and as Django's first middleware (the test client, ASGI).

Hosts: the platform's own (ALLOWED_HOSTS) and the tracking hosts of sending domains that
were verified (links.<domain>, a CNAME to the platform, where sending/message.py points
their links), cached per process for TRACKING_HOSTS_CACHE_SECONDS; any other host is
refused with 400.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from django.utils.encoding import iri_to_uri

from accounts.request_ip import client_ip
from sending import links
from sending.models import Delivery, SendingDomain
from tracking.ingest import CLICK, OPEN, Hit
from tracking.spool import hit_spool

OPEN_PREFIX, OPEN_SUFFIX = links.OPEN_PATH.split("{token}")
CLICK_PREFIX = links.CLICK_PATH.split("{token}")[0]
MAX_TOKEN = 4096
# A transparent 1x1 GIF (43 bytes).
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
ALLOWED_METHODS = ("GET", "HEAD")
_URL_FORBIDDEN = frozenset(chr(code) for code in range(33)) | {"\x7f", "\\"}
# Django's own default when DEBUG is on and ALLOWED_HOSTS is empty.
_DEBUG_HOSTS = (".localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


_PIXEL_ANSWER = Answer(
    200,
    (
        ("Content-Type", "image/gif"),
        ("Cache-Control", "no-store, no-cache, must-revalidate, private"),
        ("Pragma", "no-cache"),
        ("Expires", "0"),
        ("Content-Length", str(len(PIXEL))),
    ),
    PIXEL,
)
_NOT_FOUND = Answer(404, (("Content-Type", "text/plain"), ("Content-Length", "9")), b"Not found")
_BAD_REQUEST = Answer(
    400, (("Content-Type", "text/plain"), ("Content-Length", "11")), b"Bad request"
)
_NOT_ALLOWED = Answer(
    405,
    (
        ("Content-Type", "text/plain"),
        ("Allow", ", ".join(ALLOWED_METHODS)),
        ("Content-Length", "18"),
    ),
    b"Method not allowed",
)

_tracking_hosts: tuple[float, frozenset[str]] = (0.0, frozenset())
# Host header -> admitted, while the tracking hosts are cached: a request's host is
# judged once, not once per request (split, ALLOWED_HOSTS patterns, tracking hosts).
_host_verdicts: dict[str, bool] = {}
_HOST_VERDICTS_MAX = 1024


def tracking_hosts() -> frozenset[str]:
    """The tracking hosts of verified sending domains, read again every
    TRACKING_HOSTS_CACHE_SECONDS."""
    global _tracking_hosts
    expires_at, hosts = _tracking_hosts
    now = time.monotonic()
    if now < expires_at:
        return hosts
    # A failing domain was verified: mail already sent links to its host (a broken DMARC
    # record must not break them; a broken tracking CNAME stops its requests anyway).
    rows = SendingDomain.objects.filter(
        status__in=[SendingDomain.Status.VERIFIED, SendingDomain.Status.FAILING]
    ).values_list("tracking_subdomain", "domain")
    hosts = frozenset(f"{subdomain}.{domain}".lower() for subdomain, domain in rows)
    _host_verdicts.clear()
    _tracking_hosts = (now + settings.TRACKING_HOSTS_CACHE_SECONDS, hosts)
    if not connection.in_atomic_block:
        # Answered in front of Django, no request_finished closes this thread's
        # connection: it would sit idle until the process ends.
        connection.close()
    return hosts


def tracking_hosts_forget(**_signal) -> None:
    """Read the tracking hosts again, and judge hosts again, on the next request."""
    global _tracking_hosts
    _tracking_hosts = (0.0, frozenset())
    _host_verdicts.clear()


# Tests change ALLOWED_HOSTS, DEBUG and the like: forget the verdicts made under the old.
setting_changed.connect(tracking_hosts_forget)


def _host(environ: Mapping[str, str]) -> str:
    """The requested host, as Django's HttpRequest.get_host finds it."""
    if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
        return environ["HTTP_X_FORWARDED_HOST"]
    if "HTTP_HOST" in environ:
        return environ["HTTP_HOST"]
    return environ.get("SERVER_NAME", "")


def _is_host_allowed(environ: Mapping[str, str]) -> bool:
    host = _host(environ)
    verdict = _host_verdicts.get(host) if time.monotonic() < _tracking_hosts[0] else None
    if verdict is None:
        domain, _ = split_domain_port(host)
        allowed = settings.ALLOWED_HOSTS or (_DEBUG_HOSTS if settings.DEBUG else ())
        verdict = bool(domain) and (validate_host(domain, allowed) or domain in tracking_hosts())
        if time.monotonic() < _tracking_hosts[0]:  # remembered while the hosts are
            if len(_host_verdicts) >= _HOST_VERDICTS_MAX:
                _host_verdicts.clear()  # made-up hosts cannot grow it without bound
            _host_verdicts[host] = verdict
    return verdict


def _is_safe_target(url: str) -> bool:
    """An absolute http(s) URL with a host: never a scheme-relative, script or data URL."""
    if not url or any(char in _URL_FORBIDDEN for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


class _EventKeys:
    """Event keys of this process: a random prefix drawn once, then a counter. uuid4()
    reads the system's random source for each key, a system call that lets other
    threads take the interpreter at every request; these keys need to be unique, not
    unguessable (a hit written twice is stored once by its key)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.prefix = int.from_bytes(os.urandom(8)) << 64
        self.counter = itertools.count(int.from_bytes(os.urandom(4)))

    def next(self) -> uuid.UUID:
        return uuid.UUID(int=self.prefix | (next(self.counter) & _COUNTER_MASK), version=4)


_COUNTER_MASK = (1 << 64) - 1
_event_keys = _EventKeys()


def event_key_new() -> uuid.UUID:
    """A key no other hit has (a forked process draws a prefix of its own)."""
    global _event_keys
    keys = _event_keys
    if keys.pid != os.getpid():
        keys = _event_keys = _EventKeys()
    return keys.next()


def _hit(environ: Mapping[str, str], *, kind: str, delivery_id: int, url: str = "") -> Hit:
    return Hit(
        kind=kind,
        delivery_id=delivery_id,
        url=url,
        occurred_at=timezone.now(),
        ip=client_ip(environ, trusted_proxies=settings.TRUSTED_PROXIES),
        user_agent=environ.get("HTTP_USER_AGENT", "")[:300],
        method=environ.get("REQUEST_METHOD", "GET"),
        event_key=event_key_new(),
    )


def _open(environ: Mapping[str, str], token: str) -> Answer:
    """The GIF, whatever the token; a genuine one is recorded first."""
    delivery_id = links.open_read(token) if len(token) <= MAX_TOKEN else None
    if delivery_id is not None:
        hit_spool(_hit(environ, kind=OPEN, delivery_id=delivery_id))
    return _PIXEL_ANSWER


# The newest delivery id this process has seen.
_newest_delivery = 0
_NEWEST_DELIVERY_SQL = (
    "SELECT pg_sequence_last_value(pg_get_serial_sequence("
    f"'{Delivery._meta.db_table}', '{Delivery._meta.pk.column}'))"
)


def _is_delivery_issued(delivery_id: int) -> bool:
    """Whether a delivery with this id was ever made (and perhaps deleted since): ids come
    from a sequence that only grows, so a token naming an id above its last value is for
    a delivery that never existed here (another installation with the same key, a test).
    Looked up only when a token names a newer delivery than the process has seen, which
    takes the key to make up."""
    global _newest_delivery
    if delivery_id <= _newest_delivery:
        return True
    with connection.cursor() as cursor:
        cursor.execute(_NEWEST_DELIVERY_SQL)
        (newest,) = cursor.fetchone()
    newest = newest or 0
    _newest_delivery = max(_newest_delivery, newest)
    if not connection.in_atomic_block:
        connection.close()  # as in tracking_hosts: nothing else closes it here
    return delivery_id <= newest


def _click(environ: Mapping[str, str], token: str) -> Answer:
    """A redirect to the signed target of a genuine token of a delivery that was made;
    404 otherwise."""
    read = links.click_read(token) if len(token) <= MAX_TOKEN else None
    if read is None or not _is_safe_target(read[1]):
        return _NOT_FOUND
    delivery_id, url = read
    if not _is_delivery_issued(delivery_id):
        return _NOT_FOUND
    hit_spool(_hit(environ, kind=CLICK, delivery_id=delivery_id, url=url))
    return Answer(
        302,
        (
            ("Location", iri_to_uri(url)),
            ("Cache-Control", "no-store, private"),
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", "0"),
        ),
        b"",
    )


def is_tracking_path(path: str) -> bool:
    return path.startswith((OPEN_PREFIX, CLICK_PREFIX))


def tracking_answer(environ: Mapping[str, str]) -> Answer:
    """The answer to a request whose path is a tracking endpoint's (`is_tracking_path`)."""
    path = environ.get("PATH_INFO", "")
    if not _is_host_allowed(environ):
        return _BAD_REQUEST
    if environ.get("REQUEST_METHOD") not in ALLOWED_METHODS:
        return _NOT_ALLOWED
    if path.startswith(OPEN_PREFIX):
        if not path.isascii() or not path.endswith(OPEN_SUFFIX):
            return _PIXEL_ANSWER
        return _open(environ, path[len(OPEN_PREFIX) : -len(OPEN_SUFFIX)])
    if not path.isascii():
        return _NOT_FOUND
    return _click(environ, path[len(CLICK_PREFIX) :])
