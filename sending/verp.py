"""VERP return paths: the envelope sender that names its delivery, so that a bounce (or a
`mailto:` unsubscribe) arriving at the inbound listener maps back to one Delivery.

    bounces+<delivery id, base 36>.<HMAC, 10 bytes, base 32>@<return-path host>

The return-path host is SendingDomain.return_path_host: "<return_path_subdomain>.<domain>",
whose subdomain is SENDING_RETURN_PATH_SUBDOMAIN when the domain was added; it is the name
the domain publishes an MX (pointing at SENDING_INBOUND_HOST) and SPF for.

The token is lower-case letters and digits only, because some MTAs lower-case local parts
on the way back. The HMAC covers the local part ("bounces", "unsubscribe") with the id, so
a token given for one purpose is not good for another; it uses a key derived from
SECRET_KEY for this purpose alone, and reading tries SECRET_KEY_FALLBACKS too, so that
bounces of mail sent before a key rotation still match. A leaf module: no model imports,
and reading makes no database query.
"""

import base64
import hmac

from django.conf import settings
from django.utils.crypto import salted_hmac

from compliance.tokens import base36

BOUNCES = "bounces"
UNSUBSCRIBE = "unsubscribe"
_SALT = "sending.verp"
_MAC_BYTES = 10  # 16 base-32 characters: the local part stays well under 64 octets


def _mac(local: str, value: str, secret: str | None = None) -> str:
    digest = salted_hmac(_SALT, f"{local}+{value}", secret=secret, algorithm="sha256").digest()
    return base64.b32encode(digest[:_MAC_BYTES]).decode().lower()


def verp_token(*, delivery_id: int, local: str = BOUNCES) -> str:
    """The part after "+": the delivery and a MAC over it and the local part."""
    if not isinstance(delivery_id, int) or delivery_id <= 0:
        raise ValueError("A VERP token names a delivery by its positive id.")
    value = base36(delivery_id)
    return f"{value}.{_mac(local.lower(), value)}"


def verp_address(*, delivery_id: int, local: str = BOUNCES, domain: str) -> str:
    """ "<local>+<token>@<domain>", domain being the return-path host (ASCII)."""
    return f"{local}+{verp_token(delivery_id=delivery_id, local=local)}@{domain.lower()}"


def verp_read(address: str, *, local: str | None = None) -> int | None:
    """The delivery id of a genuine VERP address; None for anything else.

    With `local`, only an address of that local part ("bounces", "unsubscribe") is read.
    Upper or lower case makes no difference; angle brackets are ignored.
    """
    if not isinstance(address, str) or len(address) > 320:
        return None
    mailbox, at, _ = address.strip().strip("<>").rpartition("@")
    mailbox = mailbox.lower()
    given_local, plus, token = mailbox.partition("+")
    if not at or not plus or (local is not None and given_local != local.lower()):
        return None
    value, dot, mac_text = token.partition(".")
    if not dot or not value or len(value) > 13 or len(mac_text) != 16 or not token.isascii():
        return None
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        if hmac.compare_digest(mac_text, _mac(given_local, value, secret)):
            break
    else:
        return None
    try:
        delivery_id = int(value, 36)
    except ValueError:
        return None
    return delivery_id if delivery_id > 0 else None
