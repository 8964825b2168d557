"""Signed links of the accounts app: invitations and private file downloads."""

from django.conf import settings
from django.core import signing

_INVITATION_SALT = "accounts.invitation"
_DOWNLOAD_SALT = "accounts.download"


def invitation_token_make(*, invitation_id: int) -> str:
    return signing.TimestampSigner(salt=_INVITATION_SALT).sign(str(invitation_id))


def invitation_token_read(token: str) -> int | None:
    """The invitation id, or None when the token is forged, malformed or expired."""
    try:
        value = signing.TimestampSigner(salt=_INVITATION_SALT).unsign(
            token, max_age=settings.INVITATION_MAX_AGE_SECONDS
        )
        return int(value)
    except (signing.BadSignature, ValueError):
        return None


def download_token_make(*, name: str) -> str:
    return signing.TimestampSigner(salt=_DOWNLOAD_SALT).sign_object({"name": name}, compress=True)


def download_token_read(token: str, *, max_age_seconds: int) -> str | None:
    """The storage name the token grants, or None when forged, malformed or expired."""
    try:
        payload = signing.TimestampSigner(salt=_DOWNLOAD_SALT).unsign_object(
            token, max_age=max_age_seconds
        )
    except (signing.BadSignature, ValueError, UnicodeDecodeError):
        return None
    name = payload.get("name") if isinstance(payload, dict) else None
    return name if isinstance(name, str) else None
