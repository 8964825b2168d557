"""DKIM keys: generation (RSA-2048, Ed25519), the TXT record to publish, comparing a
published record with ours, and signing (relaxed/relaxed) with dkimpy."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

RSA = "rsa"
ED25519 = "ed25519"


@dataclass(frozen=True)
class KeyPair:
    algorithm: str
    private_pem: str
    public_b64: str  # the p= value


def dkim_key_generate(algorithm: str = RSA) -> KeyPair:
    if algorithm == RSA:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return KeyPair(RSA, private_pem, base64.b64encode(public_der).decode())
    if algorithm == ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
        # dkimpy takes the raw 32-byte seed, base64-encoded, as an Ed25519 private key.
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return KeyPair(
            ED25519, base64.b64encode(seed).decode(), base64.b64encode(public_raw).decode()
        )
    raise ValueError(f"Unknown DKIM algorithm {algorithm!r}.")


def dkim_record_value(*, algorithm: str, public_b64: str) -> str:
    return f"v=DKIM1; k={algorithm}; p={public_b64}"


def dkim_record_chunks(value: str, size: int = 255) -> list[str]:
    """A TXT value over 255 characters is published as several quoted strings."""
    return [value[i : i + size] for i in range(0, len(value), size)]


def dkim_tags(text: str) -> dict[str, str]:
    """Tag=value pairs of a DKIM key record; malformed parts are skipped, never fatal."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def public_key_bits(*, algorithm: str, public_b64: str) -> int | None:
    """The key size published in p= (RSA modulus bits; 256 for Ed25519); None if unreadable."""
    try:
        raw = base64.b64decode(public_b64, validate=True)
    except (ValueError, TypeError):
        return None
    if algorithm == ED25519:
        return 256 if len(raw) == 32 else None
    try:
        key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError):
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def dkim_sign(
    *, message: bytes, domain: str, selector: str, private_key: str, algorithm: str = RSA
) -> bytes:
    """The DKIM-Signature header line (with CRLF) for message, relaxed/relaxed."""
    signature_algorithm = b"ed25519-sha256" if algorithm == ED25519 else b"rsa-sha256"
    return dkimpy.sign(
        message,
        selector.encode(),
        domain.encode(),
        private_key.encode(),
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=signature_algorithm,
        include_headers=[
            b"from",
            b"to",
            b"subject",
            b"date",
            b"message-id",
            b"list-unsubscribe",
            b"list-unsubscribe-post",
            b"mime-version",
            b"content-type",
        ],
    )
