"""DKIM keys: encrypted at rest, and a signed message verifies with dkimpy through the
loopback DNS server."""

from email.message import EmailMessage
from email.policy import SMTP

import dkim as dkimpy
import pytest
from django.db import connection

from sending.dkim import PreparedSigner, dkim_sign
from sending.models import DkimKey
from sending.selectors import dkim_key_list_signing
from sending.services.domains import dkim_key_add_ed25519, sending_domain_add, sending_domain_check
from tests.factories import WorkspaceFactory
from tests.sending.conftest import dkim_dnsfunc, publish

pytestmark = pytest.mark.django_db


def _message() -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = "Shop <hello@news.example.com>"
    message["To"] = "reader@example.org"
    message["Subject"] = "Autumn sale"
    message["Date"] = "Tue, 01 Oct 2024 10:00:00 +0000"
    message["Message-ID"] = "<1@news.example.com>"
    message["List-Unsubscribe"] = "<https://testserver/u/abc>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content("Hello,\nour autumn sale starts today.\n")
    return message.as_bytes()


def test_message_signed_with_generated_keys_verifies_with_dkimpy(dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    dkim_key_add_ed25519(domain=domain, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)  # activates the Ed25519 key once its record passes
    keys = dkim_key_list_signing(domain=domain)
    assert [key.algorithm for key in keys] == ["rsa", "ed25519"]

    message = _message()
    signed = message
    for key in keys:
        header = dkim_sign(
            message=signed,
            domain=domain.domain,
            selector=key.selector,
            private_key=key.private_key,
            algorithm=key.algorithm,
        )
        signed = header + signed
    assert b"c=relaxed/relaxed" in signed
    assert b"list-unsubscribe-post" in signed.lower()

    verifier = dkimpy.DKIM(signed)
    # Signatures are prepended, so index 0 is the last one added (Ed25519).
    assert verifier.verify(idx=0, dnsfunc=dkim_dnsfunc)
    assert verifier.verify(idx=1, dnsfunc=dkim_dnsfunc)
    # The RSA record is over 255 characters: it came in several strings, over TCP.
    assert dns_server.queries_for(f"esp1._domainkey.{domain.domain}", "TXT") >= 2

    tampered = signed.replace(b"autumn sale starts", b"winter sale starts")
    assert not dkimpy.verify(tampered, dnsfunc=dkim_dnsfunc)


def test_signature_fails_when_dns_publishes_another_key(dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    other = sending_domain_add(
        workspace=WorkspaceFactory(), domain="other.example.com", acting_user=None
    )
    key = domain.dkim_keys.get()
    publish(dns_server, domain, dkim=[other.dkim_keys.get().record_value])
    signed = (
        dkim_sign(
            message=_message(),
            domain=domain.domain,
            selector=key.selector,
            private_key=key.private_key,
        )
        + _message()
    )
    assert not dkimpy.DKIM(signed).verify(dnsfunc=dkim_dnsfunc)


def test_private_keys_are_encrypted_at_rest():
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    key = DkimKey.objects.get(domain=domain)
    assert key.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM sending_dkimkey WHERE id = %s", [key.pk])
        (stored,) = cursor.fetchone()
    assert "PRIVATE KEY" not in stored
    assert stored.startswith("gAAAA")  # a Fernet token


def test_prepared_signer_signatures_verify_with_dkimpy_and_cover_one_click_headers(dns_server):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    dkim_key_add_ed25519(domain=domain, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    signers = [
        PreparedSigner(
            domain=domain.domain,
            selector=key.selector,
            private_key=key.private_key,
            algorithm=key.algorithm,
        )
        for key in dkim_key_list_signing(domain=domain)
    ]
    message = _message()
    for round_ in range(3):  # one signer, many messages
        body = message.replace(b"autumn", f"autumn {round_}".encode())
        signed = body
        for signer in signers:
            signed = signer.sign(signed) + signed
        verifier = dkimpy.DKIM(signed)
        assert verifier.verify(idx=0, dnsfunc=dkim_dnsfunc)
        assert verifier.verify(idx=1, dnsfunc=dkim_dnsfunc)  # RSA, the first signer
        tags = verifier.signature_fields
        assert tags[b"a"] == b"rsa-sha256"
        assert tags[b"c"] == b"relaxed/relaxed"
        assert b"l" not in tags
        assert {b"from", b"list-unsubscribe", b"list-unsubscribe-post"} <= set(
            verifier.include_headers
        )

    tampered = signed.replace(b"List-Unsubscribe: <https", b"List-Unsubscribe: <http")
    assert not dkimpy.DKIM(tampered).verify(idx=1, dnsfunc=dkim_dnsfunc)
