"""The filters merge tags may use; each takes a plain value and returns a plain value."""

import datetime as dt
import html
from typing import Any

from django.utils import dateformat

MAX_TRUNCATE = 100_000


def as_text(value: Any) -> str:
    """A value as the text a merge tag shows."""
    if value is None or isinstance(value, dict):
        return ""  # a whole dict (`{{ attributes }}`) would list every field: render nothing
    if isinstance(value, list):
        return ", ".join(as_text(item) for item in value if not isinstance(item, dict | list))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def _as_date(value: Any) -> Any:
    if isinstance(value, str):
        for parse in (dt.datetime.fromisoformat, dt.date.fromisoformat):
            try:
                return parse(value)
            except ValueError:
                continue
    return value


def _filter_date(value: Any, arg: Any) -> Any:
    value = _as_date(value)
    if not isinstance(value, dt.date):
        return value
    try:
        return dateformat.format(value, arg)
    except (ValueError, TypeError, AttributeError):
        return ""


def _filter_truncatechars(value: Any, arg: Any) -> str:
    text = as_text(value)
    return text if len(text) <= arg else text[: max(arg - 1, 0)] + "…"


def _capfirst(value: Any) -> str:
    text = as_text(value)
    return text[:1].upper() + text[1:]


# name -> (function(value, arg), argument kind: None, "str" or "int")
FILTERS = {
    "default": (lambda value, arg: value if value not in (None, "", [], {}) else arg, "str"),
    "upper": (lambda value, arg: as_text(value).upper(), None),
    "lower": (lambda value, arg: as_text(value).lower(), None),
    "title": (lambda value, arg: as_text(value).title(), None),
    "capfirst": (lambda value, arg: _capfirst(value), None),
    "date": (_filter_date, "str"),
    "truncatechars": (_filter_truncatechars, "int"),
    # Values are escaped wherever HTML needs it; `escape` also escapes in text parts.
    "escape": (lambda value, arg: html.escape(as_text(value)), None),
}
