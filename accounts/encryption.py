"""Secrets at rest (DKIM keys, SMTP passwords), sealed with FIELD_ENCRYPTION_KEY.

The key is separate from SECRET_KEY so that rotating one never breaks the other; several
comma-separated keys may be set, the first encrypting and all decrypting.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEY: was the key "
            "replaced instead of rotated (new key first, old key kept after a comma)?"
        ) from None


def reencrypt(token: str) -> str:
    """The same secret sealed with the current first key (for key rotation)."""
    return _current().rotate(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token; reads return the plaintext."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
