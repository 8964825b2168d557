"""The inbound listener on a loopback port, spoken to with smtplib: what it accepts, what it
refuses, its limits, and that a 250 means the message is already committed."""

import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from django.db import connection

from accounts.models import Workspace
from espsite.celery import app
from sending import verp
from sending.feedback.listener import MAX_RECIPIENTS, mailin_start
from sending.models import InboundMessage, SendingDomain
from tests.conftest import redis_test_url

pytestmark = pytest.mark.django_db(transaction=True)

RETURN_PATH_HOST = "bounces.news.shop.example"
FBL = "fbl@inbound.esp.example"
MAX_BYTES = 64 * 1024
BASE_DIR = Path(__file__).resolve().parents[3]

DSN = (
    b"From: MAILER-DAEMON@mx.mail0.test (Mail Delivery System)\r\n"
    b"To: bounces@bounces.news.shop.example\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=latin-1\r\n"
    b"\r\n"
    b"Sorry: <reader0@mail0.test> \xe9chec: user unknown\r\n"  # 8-bit, as it came
    b"..a line that starts with a dot\r\n"
    b"--b1--\r\n"
)


@pytest.fixture
def sending_domain(db) -> SendingDomain:
    workspace = Workspace.objects.create(name="Shop", slug="shop")
    return SendingDomain.objects.create(workspace=workspace, domain="news.shop.example")


@pytest.fixture
def listener(settings, free_port, sending_domain):
    """The listener on a thread of this process, against the test database."""
    settings.MAILIN_FBL_ADDRESSES = ["FBL@Inbound.Esp.Example"]
    lines: list[str] = []
    started = []

    def start(**options):
        options = {"max_message_bytes": MAX_BYTES, "max_connections": 5, **options}
        controller = mailin_start(host="127.0.0.1", port=free_port(), log=lines.append, **options)
        controller.lines = lines
        started.append(controller)
        # start() proved the server answers with a connection of its own: wait until it
        # has been counted out, so that limits are measured from zero.
        deadline = time.monotonic() + 5
        while controller.handler.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        return controller

    yield start
    for controller in started:
        controller.stop()


def _client(controller) -> smtplib.SMTP:
    client = smtplib.SMTP(controller.hostname, controller.port, timeout=10)
    client.ehlo("mx.mail0.test")
    return client


def _deliver(controller, *, rcpts: list[str], raw: bytes = DSN, sender: str = ""):
    """MAIL, RCPT each, DATA: the replies, as an MTA sees them."""
    with _client(controller) as client:
        mail = client.mail(sender)
        rcpt_replies = [client.rcpt(rcpt) for rcpt in rcpts]
        data = client.data(raw) if any(code == 250 for code, _ in rcpt_replies) else None
        return mail, rcpt_replies, data


def test_a_bounce_to_a_verp_address_is_committed_with_its_exact_bytes_before_250(listener):
    controller = listener()
    rcpt = verp.verp_address(delivery_id=123, domain=RETURN_PATH_HOST)

    mail, [(rcpt_code, _)], (code, text) = _deliver(controller, rcpts=[rcpt])

    # Read at once, on this test's own connection: the row was committed before the 250.
    row = InboundMessage.objects.get()
    assert (mail[0], rcpt_code, code) == (250, 250, 250)
    assert text.decode() == f"2.0.0 Stored as #{row.pk}"
    assert bytes(row.raw) == DSN  # 8-bit and leading dots as sent (smtplib dot-stuffs)
    assert row.mail_from == ""
    assert row.recipients == [rcpt]
    assert row.size == len(row.raw)
    assert row.helo == "mx.mail0.test"
    assert row.peer.startswith("127.0.0.1:")
    assert controller.lines == [f"#{row.pk} from <> [{row.peer}] to {rcpt} ({row.size} bytes)"]


def test_garbage_is_stored_byte_for_byte(listener):
    controller = listener()
    garbage = b"\x00\xff\xfe no headers at all\nbare LF\r\n\x1b[31m\r\nContent-Type: multipart/\r\n"

    _, _, (code, _) = _deliver(controller, rcpts=[f"postmaster@{RETURN_PATH_HOST}"], raw=garbage)

    assert code == 250
    assert bytes(InboundMessage.objects.get().raw) == garbage


def test_connections_dropped_by_the_database_are_replaced_without_a_refusal(listener):
    controller = listener()
    rcpt = f"bounces@{RETURN_PATH_HOST}"
    _deliver(controller, rcpts=[rcpt])
    with connection.cursor() as cursor:  # what a database restart does to the listener
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1

    _, _, (code, _) = _deliver(controller, rcpts=[rcpt])

    assert code == 250
    assert InboundMessage.objects.count() == 2


def test_the_fbl_address_is_accepted_in_any_case(listener):
    controller = listener()
    arf = (
        b"Subject: complaint\r\n"
        b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nx\r\n"
    )

    _, [(rcpt_code, _)], (code, _) = _deliver(
        controller, rcpts=["fbl@INBOUND.esp.example"], raw=arf, sender="fbl@isp.test"
    )

    assert (rcpt_code, code) == (250, 250)
    row = InboundMessage.objects.get()
    assert (bytes(row.raw), row.mail_from) == (arf, "fbl@isp.test")


def test_the_verp_unsubscribe_and_plain_role_addresses_of_a_return_path_host_are_accepted(
    listener,
):
    controller = listener()
    accepted = [
        verp.verp_address(delivery_id=7, local=verp.UNSUBSCRIBE, domain=RETURN_PATH_HOST),
        "Bounces+forged.aaaaaaaaaaaaaaaa@BOUNCES.news.shop.example",  # the processor decides
        f"bounces@{RETURN_PATH_HOST}",
        f"postmaster@{RETURN_PATH_HOST}",
        f"abuse@{RETURN_PATH_HOST}",
    ]

    _, replies, (code, _) = _deliver(controller, rcpts=accepted)

    assert [reply[0] for reply in replies] == [250] * len(accepted)
    assert code == 250
    assert InboundMessage.objects.get().recipients == accepted


def test_mail_for_other_domains_is_refused_as_relaying_and_nothing_is_stored(listener):
    controller = listener()
    refused = [
        "someone@gmail.test",
        "bounces@news.shop.example",  # the sending domain itself, not its return-path host
        "bounces+1.aaaaaaaaaaaaaaaa@bounces.other.example",  # no such sending domain
        "other@inbound.esp.example",  # the FBL address's host takes only the FBL address
    ]

    _, replies, data = _deliver(controller, rcpts=refused)

    assert [(code, text[:9]) for code, text in replies] == [(550, b"5.7.1 Rel")] * 4
    assert data is None
    assert not InboundMessage.objects.exists()


def test_unknown_mailboxes_at_a_return_path_host_are_refused_as_such(listener):
    controller = listener()

    _, replies, _ = _deliver(
        controller,
        rcpts=[f"{local}@{RETURN_PATH_HOST}" for local in ("info", "unsubscribe", "+x")],
    )

    assert [(code, text[:5]) for code, text in replies] == [(550, b"5.1.1")] * 3
    assert not InboundMessage.objects.exists()


def test_a_domain_added_later_is_served_once_the_cached_refusal_expires(listener, sending_domain):
    controller = listener()
    controller.handler.host_cache_seconds = 0.3
    rcpt = "bounces@bounces.later.example"
    _, [(first, _)], _ = _deliver(controller, rcpts=[rcpt])
    SendingDomain.objects.create(workspace=sending_domain.workspace, domain="later.example")

    _, [(cached, _)], _ = _deliver(controller, rcpts=[rcpt])
    time.sleep(0.4)
    _, [(fresh, _)], _ = _deliver(controller, rcpts=[rcpt])

    assert (first, cached, fresh) == (550, 550, 250)


def test_an_oversize_message_is_refused_with_552_whether_announced_or_not(listener):
    controller = listener()
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (MAX_BYTES // 1000 + 1)
    rcpt = f"bounces@{RETURN_PATH_HOST}"

    with _client(controller) as client:
        assert client.esmtp_features["size"] == str(MAX_BYTES)
        announced = client.mail("", [f"SIZE={len(big)}"])
        client.rset()
        client.mail("")
        client.rcpt(rcpt)
        unannounced = client.data(big)
        # The session goes on: a message within the limit is still taken.
        client.mail("")
        client.rcpt(rcpt)
        small = client.data(DSN)

    assert announced[0] == 552
    assert unannounced[0] == 552
    assert small[0] == 250
    assert InboundMessage.objects.get().size == len(DSN)


def test_connections_over_the_limit_get_421_and_are_closed(listener):
    controller = listener(max_connections=2)
    first, second = _client(controller), _client(controller)

    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(controller.hostname, controller.port, timeout=10)
    first.quit()
    deadline = time.monotonic() + 5
    while controller.handler.open_connections > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    third = _client(controller)  # a freed slot is usable again

    assert refused.value.smtp_code == 421
    assert refused.value.smtp_error.startswith(b"4.7.0 Too many connections")
    assert third.noop()[0] == second.noop()[0] == 250
    second.quit()
    third.quit()


def test_recipients_past_the_limit_are_refused_with_452(listener):
    controller = listener()
    rcpts = [f"bounces+{i}@{RETURN_PATH_HOST}" for i in range(MAX_RECIPIENTS + 1)]

    _, replies, (code, _) = _deliver(controller, rcpts=rcpts)

    assert [reply[0] for reply in replies] == [250] * MAX_RECIPIENTS + [452]
    assert code == 250
    assert len(InboundMessage.objects.get().recipients) == MAX_RECIPIENTS


def test_a_silent_client_is_disconnected_after_the_command_timeout(listener):
    controller = listener(timeout=0.5)
    client = _client(controller)
    time.sleep(1.0)

    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.mail("")
    assert controller.handler.open_connections == 0


def test_a_stored_message_is_handed_to_the_processing_task_through_the_broker(listener, settings):
    # Not eager: the task is published to this test's Redis for a worker to take.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    try:
        controller = listener()
        _deliver(controller, rcpts=[f"bounces@{RETURN_PATH_HOST}"])
    finally:
        app.conf.task_always_eager = True

    row = InboundMessage.objects.get()
    broker = redis.Redis.from_url(redis_test_url())
    queued = [json.loads(raw) for raw in broker.lrange("default", 0, -1)]
    assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in queued] == [
        ("sending.tasks.inbound_process_task", f"({row.pk},)")
    ]
    assert row.status == InboundMessage.Status.RECEIVED


# The `mailin` command as a process of its own, as production runs it.


def _database_url(*, port: int | None = None) -> str:
    database = connection.settings_dict
    return (
        f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
        f"{port or database['PORT'] or 5432}/{database['NAME']}"
    )


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


class MailinProcess:
    def __init__(self, port: int, env: dict[str, str]) -> None:
        self.hostname, self.port = "127.0.0.1", port
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "mailin", "--host", "127.0.0.1", "--port", str(port)],
            cwd=BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if not self.ready.wait(30):
            self.stop()
            raise AssertionError(f"mailin did not start: {self.lines}")

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("Inbound listener on"):
                self.ready.set()

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=20)
        self.reader.join(timeout=5)
        return code


@pytest.fixture
def mailin_process(free_port, sending_domain):
    started = []

    def start(**env) -> MailinProcess:
        env = {
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": redis_test_url(),
            "MAILIN_FBL_ADDRESSES": FBL,
            **env,
        }
        process = MailinProcess(free_port(), env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.stop()


def test_mailin_answers_451_while_its_database_is_unreachable(mailin_process):
    process = mailin_process(DATABASE_URL=_database_url(port=_dead_port()))

    # The FBL address needs no look-up: the message reaches DATA, and is not taken.
    _, [(fbl_rcpt, _)], (fbl_data, fbl_text) = _deliver(process, rcpts=[FBL])
    # A return-path host needs the database already at RCPT.
    _, [(host_rcpt, host_text)], _ = _deliver(process, rcpts=[f"bounces@{RETURN_PATH_HOST}"])

    assert (fbl_rcpt, fbl_data, fbl_text[:5]) == (250, 451, b"4.3.0")
    assert (host_rcpt, host_text[:5]) == (451, b"4.3.0")
    assert not InboundMessage.objects.exists()
    assert process.stop() == 0
    assert process.lines[-1] == "Inbound listener stopped"


def test_mailin_stores_and_answers_250_while_the_broker_is_down(mailin_process):
    process = mailin_process(CELERY_BROKER_URL=f"redis://127.0.0.1:{_dead_port()}/0")

    _, _, (code, _) = _deliver(process, rcpts=[f"bounces@{RETURN_PATH_HOST}", FBL])

    assert code == 250
    row = InboundMessage.objects.get()
    assert (row.status, row.recipients) == ("received", [f"bounces@{RETURN_PATH_HOST}", FBL])
    process.stop()
    assert any(line.startswith(f"#{row.pk} from <>") for line in process.lines)
    assert any(f"#{row.pk} stored but not enqueued" in line for line in process.lines)
