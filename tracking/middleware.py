"""The open pixel and click redirects, answered before the rest of the stack runs.

These are the busiest URLs of the platform and the least interesting: no session, CSRF,
authentication, messages or templates, and no database query of their own. The token is
checked first (an HMAC, sending/links.py): a forged or mangled one costs no query and is
told nothing (the pixel is always the GIF; a link answers 404). A genuine one is handed to
the writer (tracking/writer.py), which stores it with the next batch; the campaign's
tracking switches and the delivery's state are applied there, in the batch's one read.

Hosts: the platform's own (ALLOWED_HOSTS) and the tracking hosts of sending domains that
were verified (links.<domain>, a CNAME to the platform, where sending/message.py points
their links), cached per process for TRACKING_HOSTS_CACHE_SECONDS; any other host is
refused with 400.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
    HttpResponseRedirect,
)
from django.http.request import split_domain_port
from django.utils import timezone

from accounts.request_ip import client_ip
from sending import links
from sending.models import SendingDomain
from tracking.ingest import CLICK, OPEN, Hit
from tracking.writer import hit_record, hit_write

OPEN_PREFIX, OPEN_SUFFIX = links.OPEN_PATH.split("{token}")
CLICK_PREFIX = links.CLICK_PATH.split("{token}")[0]
MAX_TOKEN = 4096
# A transparent 1x1 GIF (43 bytes).
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
_ALLOWED_METHODS = ("GET", "HEAD")
_URL_FORBIDDEN = frozenset(chr(code) for code in range(33)) | {"\x7f", "\\"}

_tracking_hosts: tuple[float, frozenset[str]] = (0.0, frozenset())


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
    _tracking_hosts = (now + settings.TRACKING_HOSTS_CACHE_SECONDS, hosts)
    return hosts


def tracking_hosts_forget() -> None:
    """Read the tracking hosts again on the next request that needs them."""
    global _tracking_hosts
    _tracking_hosts = (0.0, frozenset())


def _is_host_allowed(request: HttpRequest) -> bool:
    try:
        request.get_host()  # ALLOWED_HOSTS: no query
        return True
    except DisallowedHost:
        pass
    raw = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")
    domain, _ = split_domain_port(raw)
    return bool(domain) and domain in tracking_hosts()


def _is_safe_target(url: str) -> bool:
    """An absolute http(s) URL with a host: never a scheme-relative, script or data URL."""
    if not url or any(char in _URL_FORBIDDEN for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _hit(request: HttpRequest, *, kind: str, delivery_id: int, url: str = "") -> Hit:
    return Hit(
        kind=kind,
        delivery_id=delivery_id,
        url=url,
        occurred_at=timezone.now(),
        ip=client_ip(request.META, trusted_proxies=settings.TRUSTED_PROXIES),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        method=request.method,
        event_key=uuid.uuid4(),
    )


def _pixel() -> HttpResponse:
    response = HttpResponse(PIXEL, content_type="image/gif", headers=_NO_CACHE)
    response["Content-Length"] = str(len(PIXEL))
    return response


def _not_found() -> HttpResponse:
    return HttpResponseNotFound(b"Not found", content_type="text/plain")


def open_answer(request: HttpRequest, token: str) -> HttpResponse:
    """The GIF, whatever the token; a genuine one is recorded first."""
    delivery_id = links.open_read(token) if len(token) <= MAX_TOKEN else None
    if delivery_id is not None:
        hit_record(_hit(request, kind=OPEN, delivery_id=delivery_id))
    return _pixel()


def click_answer(request: HttpRequest, token: str) -> HttpResponse:
    """A redirect to the signed target of a genuine token of an existing delivery; 404
    otherwise."""
    read = links.click_read(token) if len(token) <= MAX_TOKEN else None
    if read is None or not _is_safe_target(read[1]):
        return _not_found()
    delivery_id, url = read
    outcome = hit_write(_hit(request, kind=CLICK, delivery_id=delivery_id, url=url))
    if outcome.is_delivery_known is False:
        # Its delivery was deleted (with its campaign or workspace): the link is dead.
        # When the write failed, existence is unknown and the person still gets through.
        return _not_found()
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "no-store, private"
    return response


class TrackingMiddleware:
    """Answer /o/<token>.gif and /c/<token> itself; pass everything else on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(OPEN_PREFIX):
            kind = OPEN
        elif path.startswith(CLICK_PREFIX):
            kind = CLICK
        else:
            return self.get_response(request)
        if not _is_host_allowed(request):
            return HttpResponseBadRequest(b"Bad request", content_type="text/plain")
        if request.method not in _ALLOWED_METHODS:
            return HttpResponseNotAllowed(_ALLOWED_METHODS)
        if kind == OPEN:
            if not path.isascii() or not path.endswith(OPEN_SUFFIX):
                return _pixel()
            return open_answer(request, path[len(OPEN_PREFIX) : -len(OPEN_SUFFIX)])
        if not path.isascii():
            return _not_found()
        return click_answer(request, path[len(CLICK_PREFIX) :])
