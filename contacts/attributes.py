"""Typed custom attributes: how text from a form or a CSV cell becomes a stored value.

Values are stored in Contact.attributes as JSON: numbers as numbers, dates as ISO
'YYYY-MM-DD' strings, booleans as true/false, text and choices as strings, so that SQL can
compare them by type (segments cast by the Field's type, never compare numbers as text).
"""

import datetime as dt
from decimal import Decimal, InvalidOperation

from contacts.models import Field

_TRUE = {"1", "true", "yes", "y", "on", "t"}
_FALSE = {"0", "false", "no", "n", "off", "f"}
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y")


class InvalidValue(ValueError):
    """The text cannot be a value of the field's type; str() says why."""


def parse_number(text: str) -> int | float:
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "")
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")  # decimal comma
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidValue(f"{text!r} is not a number") from None
    if not number.is_finite():
        raise InvalidValue(f"{text!r} is not a number")
    return int(number) if number == number.to_integral_value() else float(number)


def parse_date(text: str) -> str:
    cleaned = text.strip()
    for date_format in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(cleaned, date_format).date().isoformat()  # noqa: DTZ007
        except ValueError:
            continue
    try:  # ISO timestamps: keep the date
        return dt.datetime.fromisoformat(cleaned).date().isoformat()
    except ValueError:
        raise InvalidValue(f"{text!r} is not a date (use YYYY-MM-DD)") from None


def parse_boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidValue(f"{text!r} is not yes or no")


def parse_attribute(*, field_type: str, choices: list[str], text: str):
    """The stored value of `text` for a field of this type; empty text means no value (None)."""
    if text is None or not str(text).strip():
        return None
    text = str(text)
    if field_type == Field.Type.NUMBER:
        return parse_number(text)
    if field_type == Field.Type.DATE:
        return parse_date(text)
    if field_type == Field.Type.BOOLEAN:
        return parse_boolean(text)
    if field_type == Field.Type.CHOICE:
        value = text.strip()
        if choices and value not in choices:
            raise InvalidValue(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return text.strip()[:2000]
