"""What the issue promises of bad mail, through the real listener: malformed MIME, 8-bit
garbage and truncated DSNs sent over SMTP to a VERP bounces address are stored byte for
byte and land in the operators' review list (status unparsed), and a bounce with a huge
attachment is processed without touching anyone but the delivery its VERP address names.
Celery is eager: the task runs as soon as the listener has committed the message."""

import base64
import smtplib
import time

import pytest
from django.urls import reverse

from accounts.models import Workspace
from contacts.models import Contact, Suppression
from sending import verp
from sending.feedback.listener import mailin_start
from sending.models import Delivery, FeedbackEvent, InboundMessage, SendingDomain
from tests.sending.feedback.test_inbound import USER_UNKNOWN, hard_dsn, postfix_dsn
from tests.sending.feedback.test_services import DOMAIN, make_delivery

pytestmark = pytest.mark.django_db(transaction=True)

RETURN_PATH_HOST = f"bounces.{DOMAIN}"
REVIEW_LIST = "/admin/sending/inboundmessage/"  # opens on "to review" (unparsed, failed)


@pytest.fixture
def workspace_with_domain(db) -> Workspace:
    workspace = Workspace.objects.create(name="Shop", slug="shop")
    SendingDomain.objects.create(workspace=workspace, domain=DOMAIN)
    return workspace


@pytest.fixture
def listener(free_port, workspace_with_domain):
    controller = mailin_start(
        host="127.0.0.1", port=free_port(), max_message_bytes=8 * 1024 * 1024, max_connections=5
    )
    try:
        yield controller
    finally:
        controller.stop()


def _send(controller, *, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP(controller.hostname, controller.port, timeout=60) as client:
        client.ehlo("mx.mail.test")
        client.mail("")
        assert client.rcpt(rcpt)[0] == 250
        return client.data(raw)


def _row_of(reply: bytes) -> InboundMessage:
    # "2.0.0 Stored as #<id>": committed (and, eagerly, processed) before the 250.
    return InboundMessage.objects.get(pk=int(reply.decode().rpartition("#")[2]))


def _truncated_dsn(delivery: Delivery, to: str) -> bytes:
    full = postfix_dsn(
        to=to,
        recipients=[(delivery.address, "failed", "5.1.1", USER_UNKNOWN.format(delivery.address))],
    )
    return full[: full.index(b"be delivered")]  # the connection of the MTA that wrote it died


def _malformed_mime(to: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.mail.test (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\r\n\r\n"
        "--\r\nContent-Type: message/delivery-status\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all!!!\r\n--\r\n"
    ).encode()


def _garbage() -> bytes:
    # 8-bit bytes and NULs, but CRLF line ends only: smtplib rewrites a bare CR or LF.
    line = bytes(b for b in range(256) if b not in (10, 13))
    return b"\r\n".join([line] * 40) + b"\r\n"


def test_bad_mail_sent_to_the_listener_is_kept_whole_and_lands_in_the_review_list(
    listener, workspace_with_domain, operator_client
):
    deliveries = [
        make_delivery(workspace=workspace_with_domain, address=f"reader{i}@mail.test")
        for i in range(3)
    ]
    addresses = [verp.verp_address(delivery_id=d.pk, domain=RETURN_PATH_HOST) for d in deliveries]
    messages = {
        "malformed MIME": _malformed_mime(addresses[0]),
        "8-bit garbage": _garbage(),
        "truncated DSN": _truncated_dsn(deliveries[2], addresses[2]),
    }
    rows = {}
    for (name, raw), address in zip(messages.items(), addresses, strict=True):
        code, reply = _send(listener, rcpt=address, raw=raw)
        assert code == 250, name
        rows[name] = _row_of(reply)

    page = operator_client.get(REVIEW_LIST).content.decode()
    for (name, raw), delivery in zip(messages.items(), deliveries, strict=True):
        row = rows[name]
        assert bytes(row.raw) == raw, name
        assert (row.status, row.delivery_id) == ("unparsed", delivery.pk), name
        assert row.error, name
        assert reverse("admin:sending_inboundmessage_change", args=[row.pk]) in page, name
    # Nobody is suppressed or marked on a guess.
    assert not Suppression.objects.exists()
    assert set(Contact.objects.values_list("status", flat=True)) == {Contact.Status.ACTIVE}
    assert Delivery.objects.get(pk=deliveries[1].pk).state == Delivery.State.SENT


def test_a_bounce_with_a_huge_attachment_acts_only_on_the_delivery_it_names(
    listener, workspace_with_domain
):
    mine = make_delivery(workspace=workspace_with_domain, address="mine@mail.test")
    other = make_delivery(workspace=workspace_with_domain, address="other@mail.test")
    address = verp.verp_address(delivery_id=mine.pk, domain=RETURN_PATH_HOST)
    dsn = hard_dsn(mine, to=address)
    # ~5 MB more: an attachment that names the other contact over and over.
    filler = (f"Final-Recipient: rfc822; {other.address}\n" * 120_000).encode()
    attachment = base64.encodebytes(filler).replace(b"\n", b"\r\n")
    boundary = b"--3F1A2C0042.1764408600/mx.mail.test--\r\n"
    raw = dsn.replace(
        boundary,
        b"--3F1A2C0042.1764408600/mx.mail.test\r\n"
        b"Content-Type: application/octet-stream; name=big.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + boundary,
    )
    assert len(raw) > 5_000_000

    started = time.monotonic()
    code, reply = _send(listener, rcpt=address, raw=raw)
    assert code == 250
    row = _row_of(reply)
    assert time.monotonic() - started < 60
    assert bytes(row.raw) == raw
    assert row.size == len(raw)
    assert (row.status, row.delivery_id) == ("processed", mine.pk)
    assert Delivery.objects.get(pk=mine.pk).bounce_class == "hard"
    assert set(FeedbackEvent.objects.values_list("delivery_id", flat=True)) <= {mine.pk}
    assert Delivery.objects.get(pk=other.pk).state == Delivery.State.SENT
    assert Contact.objects.get(pk=other.contact_id).status == Contact.Status.ACTIVE
    assert not Suppression.objects.filter(email=other.address).exists()
