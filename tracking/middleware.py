"""The tracking endpoints (tracking/endpoints.py) in front of Django, and inside it.

`TrackingWSGI` wraps the WSGI application (espsite/wsgi.py): /o/ and /c/ requests are
answered from the environ without Django building a request, running its signals and
its response machinery, which cost more than the rest of a pixel's answer. Anything
else goes on to Django. `TrackingMiddleware`, first in MIDDLEWARE, answers the same
paths where Django is entered another way (the test client, ASGI), with the same
answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse

from tracking.endpoints import Answer, is_tracking_path, tracking_answer

logger = logging.getLogger(__name__)

_ERROR = Answer(
    500,
    (("Content-Type", "text/plain"), ("Content-Length", "12")),
    b"Server error",
)


_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class TrackingWSGI:
    """WSGI middleware: the tracking endpoints' answers, or the wrapped application's."""

    def __init__(self, application: Callable) -> None:
        self.application = application

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not is_tracking_path(environ.get("PATH_INFO", "")):
            return self.application(environ, start_response)
        try:
            answer = tracking_answer(environ)
        except Exception:
            # Django would log and answer 500 for a view; so does this, without Django.
            logger.exception("Tracking request %s failed", environ.get("PATH_INFO", "")[:100])
            answer = _ERROR
        start_response(_STATUS_LINES[answer.status], list(answer.headers))
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [answer.body]


class TrackingMiddleware:
    """Answer /o/<token>.gif and /c/<token> itself; pass everything else on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_tracking_path(request.path_info):
            return self.get_response(request)
        answer = tracking_answer(request.META)
        response = HttpResponse(answer.body, status=answer.status)
        for name, value in answer.headers:
            response[name] = value
        return response
