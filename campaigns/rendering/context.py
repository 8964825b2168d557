"""The render context: plain values only, so nothing in a template can reach code."""

import datetime as dt
from collections.abc import Mapping
from typing import Any

MAX_CONTEXT_DEPTH = 6


class ContextError(TypeError):
    """A render context holding something other than plain values."""


_SCALARS = (str, bool, int, float, dt.date, type(None))  # dt.datetime is a dt.date


def validate_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy of the context; ContextError for anything but plain values.

    Allowed: str, int, float, bool, None, date, datetime and dicts (str keys not starting
    with `_`) and lists of those. Model instances, managers, callables and other objects
    are refused, so nothing in a template can reach code.
    """
    if not isinstance(context, Mapping):
        raise ContextError("The render context must be a dict.")
    return _plain(context, "context", 0)


def _plain(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_CONTEXT_DEPTH:
        raise ContextError(f"{where}: nested too deeply.")
    if isinstance(value, str):
        return str.__str__(
            value
        )  # drops str subclasses such as SafeString: values are escaped anyway
    if isinstance(value, _SCALARS) and not callable(value):
        if isinstance(value, bool | int) and type(value) not in (bool, int):
            return int(value)  # IntegerChoices and friends
        return value
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise ContextError(f"{where}: key {key!r} is not allowed.")
            plain[str(key)] = _plain(item, f"{where}.{key}", depth + 1)
        return plain
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[]", depth + 1) for item in value]
    raise ContextError(f"{where}: {type(value).__name__} is not a plain value.")
