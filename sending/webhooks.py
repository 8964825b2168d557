"""ESP webhooks through django-anymail: its views check each ESP's signature and the basic
authentication of ANYMAIL["WEBHOOK_SECRET"], normalise the payload and send the `tracking`
signal; the receiver here hands each event to sending/services/esp_events.py, which acts on
it like the same feedback by mail, once per event (ESPs redeliver).

anymail leaves a webhook open (with a warning) when WEBHOOK_SECRET is unset; a forged
"complained" event would unsubscribe a contact, so these URLs refuse every request until
the secret is set.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import URLPattern, URLResolver

from sending.services.esp_events import esp_event_record

logger = logging.getLogger(__name__)


def tracking_received(sender: Any, event: Any, esp_name: str, **kwargs: Any) -> None:
    """anymail's `tracking` signal: one normalised event of one ESP."""
    esp_event_record(event=event, esp_name=esp_name)


def webhook_secret_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse (403) while ANYMAIL["WEBHOOK_SECRET"] is unset; anymail checks it when set."""

    @functools.wraps(view)  # keeps csrf_exempt and login_not_required
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (getattr(settings, "ANYMAIL", None) or {}).get("WEBHOOK_SECRET"):
            logger.warning("ESP webhook refused: ANYMAIL_WEBHOOK_SECRET is not set.")
            return HttpResponseForbidden("Webhooks are off: set ANYMAIL_WEBHOOK_SECRET.\n")
        return view(request, *args, **kwargs)

    return wrapped


def anymail_urlpatterns() -> tuple[list[URLPattern | URLResolver], str]:
    """anymail's webhook URLs (…/<esp>/tracking/, …/<esp>/inbound/), each behind
    webhook_secret_required; for `include()` under the "anymail" namespace."""
    from anymail import urls

    patterns: list[URLPattern | URLResolver] = []
    for pattern in urls.urlpatterns:
        if isinstance(pattern, URLPattern):
            pattern = URLPattern(
                pattern.pattern,
                webhook_secret_required(pattern.callback),
                pattern.default_args,
                pattern.name,
            )
        patterns.append(pattern)
    return patterns, urls.app_name
