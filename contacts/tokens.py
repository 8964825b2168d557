"""Signed links of the contacts app: double opt-in confirmations.

A token names one subscription (and the form it came from, for the consent record's
source). Its signature and age are checked in constant time before any database query,
so a forged or expired link costs nothing and writes nothing.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

_CONFIRM_SALT = "contacts.signup.confirm"


@dataclass(frozen=True)
class ConfirmationClaim:
    subscription_id: int
    form_id: int | None


class ConfirmationExpired(Exception):
    """The link was genuine but is older than SIGNUP_CONFIRMATION_MAX_AGE_SECONDS."""


def confirmation_token_make(*, subscription_id: int, form_id: int | None) -> str:
    """A URL-safe token ("<sub>.<form>:<time>:<signature>") for the confirmation link."""
    value = f"{subscription_id}.{form_id or 0}"
    return signing.TimestampSigner(salt=_CONFIRM_SALT).sign(value)


def confirmation_token_read(token: str) -> ConfirmationClaim | None:
    """The subscription the token names; None when forged or malformed.

    Raises ConfirmationExpired for a genuine token past its lifetime, so the page can say
    "expired" rather than "invalid".
    """
    signer = signing.TimestampSigner(salt=_CONFIRM_SALT)
    try:
        value = signer.unsign(token, max_age=settings.SIGNUP_CONFIRMATION_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise ConfirmationExpired from None
    except signing.BadSignature:
        return None
    subscription_part, _, form_part = value.partition(".")
    try:
        subscription_id, form_id = int(subscription_part), int(form_part or 0)
    except ValueError:
        return None
    if subscription_id <= 0:
        return None
    return ConfirmationClaim(subscription_id=subscription_id, form_id=form_id or None)
