"""Signed links the public follows from a mail: unsubscribe, preferences, confirmations,
downloads. A leaf module (no model imports): sending imports it to build List-Unsubscribe.

A token names (workspace, contact, purpose) and optionally a campaign and a list. Each
purpose signs with its own salt, so a token of one purpose never verifies as another. The
HMAC is compared in constant time by Django's signing, which also tries every key of
SECRET_KEY_FALLBACKS: rotating SECRET_KEY keeps old links working. Reading a token makes
no database query; callers look the contact up only once the signature has verified.

Unsubscribe and preference tokens never expire (old mail stays in inboxes for years and
CAN-SPAM wants the opt-out to keep working); confirmation and download tokens do.
"""

import enum
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

UNSUBSCRIBE_PATH = "/u/{token}"
PREFERENCES_PATH = "/p/{token}"
WEB_VERSION_PATH = "/v/{token}"


class Purpose(enum.StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    CONFIRMATION = "confirmation"
    DOWNLOAD = "download"
    WEB_VERSION = "web_version"


EXPIRING_PURPOSES = frozenset({Purpose.CONFIRMATION, Purpose.DOWNLOAD})


@dataclass(frozen=True)
class TokenClaim:
    purpose: Purpose
    workspace_id: int
    contact_id: int
    campaign_id: int | None = None
    list_id: int | None = None


class TokenExpired(Exception):
    """A genuine confirmation or download token older than its max_age."""


def _signer(purpose: Purpose) -> signing.TimestampSigner:
    # The timestamp is signed into every token (when it was made is worth knowing), but
    # only expiring purposes ever pass max_age.
    return signing.TimestampSigner(salt=f"compliance.tokens.{Purpose(purpose).value}")


def base36(number: int) -> str:
    """A non-negative id in lower-case base 36: short, and safe where case is lost."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def token_make(
    *,
    purpose: Purpose,
    workspace_id: int,
    contact_id: int,
    campaign_id: int | None = None,
    list_id: int | None = None,
) -> str:
    """A compact URL-safe token: "<ws>.<contact>.<campaign>.<list>:<time>:<hmac>" (base 36)."""
    parts = [workspace_id, contact_id, campaign_id or 0, list_id or 0]
    if any(not isinstance(part, int) or part < 0 for part in parts) or min(parts[:2]) <= 0:
        raise ValueError("Token ids must be positive integers.")
    return _signer(purpose).sign(".".join(base36(part) for part in parts))


def token_read(token: str, *, purpose: Purpose, max_age: int | None = None) -> TokenClaim | None:
    """The claim of a genuine token of this purpose; None when forged, truncated, tampered,
    of another purpose or malformed. Expiring purposes need max_age (seconds) and raise
    TokenExpired past it; the others refuse a max_age (they never expire)."""
    purpose = Purpose(purpose)
    if purpose in EXPIRING_PURPOSES and max_age is None:
        raise ValueError(f"{purpose} tokens expire: pass max_age.")
    if purpose not in EXPIRING_PURPOSES and max_age is not None:
        raise ValueError(f"{purpose} tokens never expire.")
    if not isinstance(token, str) or len(token) > 200:
        return None
    try:
        value = _signer(purpose).unsign(token, max_age=max_age)
    except signing.SignatureExpired:
        raise TokenExpired from None
    except signing.BadSignature:
        return None
    parts = value.split(".")
    if len(parts) != 4:
        return None
    try:
        workspace_id, contact_id, campaign_id, list_id = (int(part, 36) for part in parts)
    except ValueError:
        return None
    if workspace_id <= 0 or contact_id <= 0:
        return None
    return TokenClaim(
        purpose=purpose,
        workspace_id=workspace_id,
        contact_id=contact_id,
        campaign_id=campaign_id or None,
        list_id=list_id or None,
    )


def unsubscribe_token(
    *,
    workspace_id: int,
    contact_id: int,
    campaign_id: int | None = None,
    list_id: int | None = None,
) -> str:
    return token_make(
        purpose=Purpose.UNSUBSCRIBE,
        workspace_id=workspace_id,
        contact_id=contact_id,
        campaign_id=campaign_id,
        list_id=list_id,
    )


def preferences_token(*, workspace_id: int, contact_id: int) -> str:
    return token_make(purpose=Purpose.PREFERENCES, workspace_id=workspace_id, contact_id=contact_id)


def unsubscribe_url(
    *,
    workspace_id: int,
    contact_id: int,
    campaign_id: int | None = None,
    list_id: int | None = None,
) -> str:
    """The absolute URL for the footer link and for List-Unsubscribe (RFC 8058 one-click).

    With a list id the link leaves that list; without one it leaves everything of the
    workspace (and suppresses the address there).
    """
    token = unsubscribe_token(
        workspace_id=workspace_id, contact_id=contact_id, campaign_id=campaign_id, list_id=list_id
    )
    return settings.BASE_URL + UNSUBSCRIBE_PATH.format(token=token)


def preferences_url(*, workspace_id: int, contact_id: int) -> str:
    token = preferences_token(workspace_id=workspace_id, contact_id=contact_id)
    return settings.BASE_URL + PREFERENCES_PATH.format(token=token)


def web_version_url(*, workspace_id: int, contact_id: int, campaign_id: int) -> str:
    """The "view in browser" link: the campaign as this contact received it (never expires)."""
    token = token_make(
        purpose=Purpose.WEB_VERSION,
        workspace_id=workspace_id,
        contact_id=contact_id,
        campaign_id=campaign_id,
    )
    return settings.BASE_URL + WEB_VERSION_PATH.format(token=token)
