"""The listener's connection limits: per client address, and a deadline on a whole session
that a client cannot push back with NOOPs."""

import io
import smtplib
import socket
import time

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from accounts.models import Workspace
from sending import verp
from sending.feedback.listener import MailinHandler
from sending.models import InboundMessage, SendingDomain
from sending.selectors import return_path_host_exists
from tests.sending.feedback import test_listener as base
from tests.sending.feedback.test_listener import DSN, RETURN_PATH_HOST, _client

# test_listener's fixtures: the listener on a thread of this process, a sending domain.
listener = base.listener
sending_domain = base.sending_domain

pytestmark = pytest.mark.django_db(transaction=True)


def _client_from(controller, source: str) -> smtplib.SMTP:
    """A client whose connection comes from another loopback address (127.0.0.0/8)."""
    client = smtplib.SMTP(timeout=10, source_address=(source, 0))
    client.connect(controller.hostname, controller.port)
    client.ehlo("mx.mail0.test")
    return client


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_limits_default_to_the_settings():
    handler = MailinHandler(max_connections=100)
    try:
        assert handler.max_connections_per_peer == django_settings.MAILIN_MAX_CONNECTIONS_PER_PEER
        assert handler.session_seconds == django_settings.MAILIN_SESSION_SECONDS
        assert (handler.max_connections_per_peer, handler.session_seconds) == (10, 600)
    finally:
        handler.close()


def test_one_address_over_its_cap_gets_421_while_others_still_connect(listener):
    controller = listener(max_connections=10, max_connections_per_peer=2)
    first, second = _client(controller), _client(controller)

    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(controller.hostname, controller.port, timeout=10)
    other = _client_from(controller, "127.0.0.2")  # another sender is not held back

    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.7.0 Too many connections from your address")
    assert other.noop()[0] == 250
    assert controller.handler.peer_connections == {"127.0.0.1": 2, "127.0.0.2": 1}
    # The refused one held no slot of either limit.
    assert controller.handler.open_connections == 3
    for client in (first, second, other):
        client.quit()


def test_a_slot_freed_by_one_address_is_usable_again_and_counts_return_to_zero(listener):
    controller = listener(max_connections=10, max_connections_per_peer=1)
    first = _client(controller)
    first.quit()
    _wait_until(lambda: not controller.handler.peer_connections)

    again = _client(controller)
    assert again.noop()[0] == 250
    again.quit()
    _wait_until(lambda: controller.handler.open_connections == 0)
    assert controller.handler.peer_connections == {}
    assert controller.handler.open_connections == 0


def test_a_client_kept_alive_by_noops_is_disconnected_with_421_at_the_session_deadline(listener):
    # The command timeout (2 s) never fires: a NOOP every 0.2 s resets it. The session
    # deadline (1 s) does.
    controller = listener(session_seconds=1.0, timeout=2.0)
    client = _client(controller)
    started = time.monotonic()
    replies = []
    disconnected = False
    while not disconnected and time.monotonic() - started < 5:
        try:
            replies.append(client.noop())
        except smtplib.SMTPServerDisconnected:
            disconnected = True
        time.sleep(0.2)
    elapsed = time.monotonic() - started

    assert disconnected
    assert 0.8 < elapsed < 2.0
    # The 421 is read as the reply to the next command; the one after finds the door shut.
    assert [code for code, _ in replies[:-1]] == [250] * (len(replies) - 1)
    assert len(replies) >= 4
    assert replies[-1] == (421, b"4.4.2 Session time limit exceeded, closing connection")
    _wait_until(lambda: controller.handler.open_connections == 0)
    assert controller.handler.open_connections == 0
    assert controller.handler.peer_connections == {}


def test_the_421_of_an_expired_session_is_what_the_client_reads(listener):
    controller = listener(session_seconds=0.5, timeout=5.0)
    with socket.create_connection((controller.hostname, controller.port), timeout=5) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        time.sleep(0.8)
        assert reader.readline() == b"421 4.4.2 Session time limit exceeded, closing connection\r\n"
        assert reader.readline() == b""  # and the door is closed


def test_a_message_in_progress_at_the_deadline_is_finished_and_stored_before_closing(listener):
    controller = listener(session_seconds=0.5, timeout=5.0)
    rcpt = verp.verp_address(delivery_id=7, domain=RETURN_PATH_HOST)
    with socket.create_connection((controller.hostname, controller.port), timeout=5) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        for command in (b"EHLO mx.mail0.test", b"MAIL FROM:<>", f"RCPT TO:<{rcpt}>".encode()):
            raw.sendall(command + b"\r\n")
            while (line := reader.readline())[3:4] == b"-":
                pass
            assert line[:3] in (b"250",), line
        raw.sendall(b"DATA\r\n")
        assert reader.readline().startswith(b"354")
        stuffed = DSN.replace(b"\r\n.", b"\r\n..")  # as smtplib would send it
        raw.sendall(stuffed[:40])
        time.sleep(0.9)  # past the deadline in the middle of the message
        raw.sendall(stuffed[40:] + b".\r\n")
        stored = reader.readline()
        expired = reader.readline()

    row = InboundMessage.objects.get()
    assert stored == f"250 2.0.0 Stored as #{row.pk}\r\n".encode()
    assert expired.startswith(b"421 4.4.2")
    assert bytes(row.raw) == DSN


def test_print_postfix_domains_lists_every_return_path_host_and_the_fbl_domain(
    sending_domain, settings
):
    settings.MAILIN_FBL_ADDRESSES = ["FBL@Inbound.Esp.Example", "jmrp@bounces.news.shop.example"]
    other = Workspace.objects.create(name="Other", slug="other")
    SendingDomain.objects.create(workspace=other, domain="mail.other.example")
    SendingDomain.objects.create(
        workspace=other, domain="alt.other.example", return_path_subdomain="rp"
    )
    out = io.StringIO()

    call_command("mailin", "--print-postfix-domains", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines == [
        "bounces.mail.other.example OK",
        "bounces.news.shop.example OK",
        "rp.alt.other.example OK",
        "inbound.esp.example OK",
    ]
    # What Postfix relays is exactly what the listener takes.
    hosts = [line.split()[0] for line in lines[:-1]]
    assert all(return_path_host_exists(host=host) for host in hosts)
