"""DKIM keys: generation (RSA-2048, Ed25519), the TXT record to publish, comparing a
published record with ours, and signing (relaxed/relaxed).

`dkim_sign` is dkimpy end to end. `PreparedSigner` is the send path's signer: dkimpy's
header parsing, canonicalisation, selection and folding, with the key loaded once and the
signature computed by the `cryptography` package (OpenSSL) instead of dkimpy's pure-Python
RSA, which costs about 10 ms per message. The body is canonicalised here (the same relaxed
rules as dkimpy's, without rewriting every single space), so dkimpy only ever sees the
header block. dkimpy verifies both in the tests.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass

import dkim as dkimpy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

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


SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
    b"feedback-id",
    b"mime-version",
    b"content-type",
)
_RELAXED = dkimpy.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


class PreparedSigner:
    """Signs many messages for one domain and key (relaxed/relaxed, no l= tag).

    `sign(message)` takes a whole message. The send path, which signs one message with
    several keys, hashes the body once (`body_hash`) and signs the header block with each
    key (`sign_headers`): the header block alone is all dkimpy parses.
    """

    _SPACE_RUN = re.compile(rb"  +")
    _BARE_LF = re.compile(rb"(?<!\r)\n")
    _FIELD_START = re.compile(rb"\r\n(?![ \t])")  # a line break not followed by a fold
    _NAME_BAD = re.compile(rb"[^\x21-\x7e]")

    def __init__(self, *, domain: str, selector: str, private_key: str, algorithm: str = RSA):
        self.domain = domain.encode()
        self.selector = selector.encode()
        self.algorithm = algorithm
        if algorithm == RSA:
            self._key = serialization.load_pem_private_key(private_key.encode(), password=None)
            self._tag = b"rsa-sha256"
        elif algorithm == ED25519:
            seed = base64.b64decode(private_key)
            self._key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
            self._tag = b"ed25519-sha256"
        else:
            raise ValueError(f"Unknown DKIM algorithm {algorithm!r}.")

    def _signature(self, digest: bytes) -> bytes:
        if self.algorithm == RSA:
            return self._key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return self._key.sign(digest)  # RFC 8463: Ed25519 over the SHA-256 of the headers

    @classmethod
    def message_split(cls, message: bytes) -> tuple[bytes, bytes]:
        """(header block ending in CRLF, body), line ends made CRLF as dkimpy reads them."""
        if message.count(b"\n") != message.count(b"\r\n"):
            message = cls._BARE_LF.sub(b"\r\n", message)
        if message.startswith(b"\r\n"):
            return b"", message[2:]
        head, blank, body = message.partition(b"\r\n\r\n")
        if not blank:  # headers only
            return (head if head.endswith(b"\r\n") else head + b"\r\n"), b""
        return head + b"\r\n", body

    @classmethod
    def body_hash(cls, body: bytes) -> bytes:
        """bh=: SHA-256 of the body canonicalised with the relaxed rules (RFC 6376 3.4.4).

        dkimpy's rules exactly, in a cheaper order: tabs become spaces and runs of spaces
        one space (single spaces, most of a body, are left alone rather than replaced by
        themselves), after which the only trailing WSP a line can have is one space before
        its CRLF; then empty lines at the end go, and a body without a final CRLF gets one
        (an empty body stays empty).
        """
        if b"\t" in body:
            body = body.replace(b"\t", b" ")
        if b"  " in body:
            body = cls._SPACE_RUN.sub(b" ", body)
        if b" \r\n" in body:
            body = body.replace(b" \r\n", b"\r\n")
        end = len(body)
        while body.endswith(b"\r\n", 0, end):
            end -= 2
        body = body[:end] + b"\r\n" if end else b""
        return base64.b64encode(hashlib.sha256(body).digest())

    def sign(self, message: bytes, *, include_headers: tuple[bytes, ...] = SIGNED_HEADERS) -> bytes:
        """The DKIM-Signature header line (ending in CRLF) to put on top of message."""
        headers, body = self.message_split(message)
        return self.sign_headers(
            headers, body_hash=self.body_hash(body), include_headers=include_headers
        )

    def sign_headers(
        self,
        headers: bytes,
        *,
        body_hash: bytes,
        include_headers: tuple[bytes, ...] = SIGNED_HEADERS,
    ) -> bytes:
        """The DKIM-Signature line for a message of this header block (CRLF line ends,
        ending in CRLF) and this body hash (from `body_hash`)."""
        return self.sign_canonical(
            self.headers_canonical(headers), body_hash=body_hash, include_headers=include_headers
        )

    @classmethod
    def headers_canonical(cls, headers: bytes) -> list[tuple[bytes, bytes]]:
        """A header block parsed and canonicalised (relaxed): made once for a message, then
        signed with each key (`sign_canonical`).

        dkimpy's parse and rules (names lower-cased; values unfolded, WSP runs made one
        space, stripped), with its regular expressions looked up once instead of twice per
        field. A block dkimpy would read differently (a continuation line first, a line
        that is no field) goes to dkimpy itself.
        """
        if headers.count(b"\n") != headers.count(b"\r\n"):
            headers = cls._BARE_LF.sub(b"\r\n", headers)
        if not headers or headers.startswith((b" ", b"\t")):
            return cls._headers_canonical_dkimpy(headers)
        canonical = []
        for field in cls._FIELD_START.split(headers.removesuffix(b"\r\n")):
            name, colon, value = field.partition(b":")
            if not colon or not name or cls._NAME_BAD.search(name):
                return cls._headers_canonical_dkimpy(headers)
            value = value.replace(b"\r\n", b"")
            if b"\t" in value:
                value = value.replace(b"\t", b" ")
            if b"  " in value:
                value = cls._SPACE_RUN.sub(b" ", value)
            canonical.append((name.lower(), value.strip() + b"\r\n"))
        return canonical

    @staticmethod
    def _headers_canonical_dkimpy(headers: bytes) -> list[tuple[bytes, bytes]]:
        parsed, _ = dkimpy.rfc822_parse(headers + b"\r\n")
        return _RELAXED.canonicalize_headers(parsed)

    def sign_canonical(
        self,
        canonical: list[tuple[bytes, bytes]],
        *,
        body_hash: bytes,
        include_headers: tuple[bytes, ...] = SIGNED_HEADERS,
    ) -> bytes:
        """The DKIM-Signature line for headers from `headers_canonical` and a body hash."""
        present = {name for name, _ in canonical}
        # Only the headers this message has are listed (From always: RFC 6376 requires it).
        signed = tuple(name for name in include_headers if name in present or name == b"from")
        fields = [
            (b"v", b"1"),
            (b"a", self._tag),
            (b"c", b"relaxed/relaxed"),
            (b"d", self.domain),
            (b"i", b"@" + self.domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector),
            (b"t", str(int(time.time())).encode()),
            (b"h", b" : ".join(signed)),
            (b"bh", body_hash),
            # A placeholder, so that folding puts b= on a line of its own.
            (b"b", b"0" * 60),
        ]
        value = dkimpy.fold(b"; ".join(b"=".join(field) for field in fields), namelen=14)
        value = dkimpy.RE_BTAG.sub(b"\\1", value)
        hasher = hashlib.sha256()
        dkimpy.hash_headers(
            hasher,
            _RELAXED,
            canonical,
            signed,
            (b"DKIM-Signature", b" " + value),
            dict(fields),
        )
        fields[-1] = (b"b", base64.b64encode(self._signature(hasher.digest())))
        value = b"; ".join(b"=".join(field) for field in fields) + b"\r\n"
        return b"DKIM-Signature: " + dkimpy.fold(value, namelen=14, linesep=b"\r\n")


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
