"""The smarthost relay against a real (faulty) SMTP server on loopback."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sending.models import IpPool
from sending.transports import transport_for, transports_close
from sending.transports.base import Envelope, TransportConfigError
from sending.transports.mx import MxTransport
from sending.transports.smtp import SmtpTransport
from tests.sending.sinks import FaultySink, self_signed_certificate

pytestmark = pytest.mark.timeout(60)


def message(number: int, to: str = "someone@example.com", body: str = "Hello") -> bytes:
    return (
        f"From: News <news@brand.example>\r\nTo: {to}\r\nSubject: Issue {number}\r\n"
        f"Message-ID: <{number}@brand.example>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body} {number}\r\n"
    ).encode()


def envelope(number: int, recipient: str, **fields) -> Envelope:
    fields.setdefault("mail_from", f"b+{number}@bounces.brand.example")
    fields.setdefault("message", message(number, recipient))
    return Envelope(delivery_id=number, recipient=recipient, **fields)


@pytest.fixture
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sinks():
    started: list[FaultySink] = []

    def start(**options) -> FaultySink:
        sink = FaultySink(**options).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def relay():
    made: list[SmtpTransport] = []

    def make(sink: FaultySink, **options) -> SmtpTransport:
        transport = SmtpTransport(host=sink.host, port=sink.port, timeout=5, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def states(results) -> dict[int, str]:
    return {result.delivery_id: result.state for result in results}


def test_many_messages_go_over_one_reused_connection(sinks, relay):
    sink = sinks()
    transport = relay(sink, connections=1)

    for batch in range(3):
        envelopes = [envelope(batch * 100 + n, f"r{n}@example.com") for n in range(20)]
        results = transport.send_many(envelopes)
        assert [r.delivery_id for r in results] == [e.delivery_id for e in envelopes]
        assert {r.state for r in results} == {"sent"}

    assert len(sink.received) == 60
    assert sink.session_count == 1
    assert transport.connections_opened == 1
    sent = results[0]
    assert sent.smtp_code == 250
    assert sent.enhanced_code == "2.0.0"
    assert sent.remote_host == f"127.0.0.1:{sink.port}"


def test_a_batch_is_spread_over_the_pool_and_the_pool_is_reused(sinks, relay):
    sink = sinks()
    transport = relay(sink, connections=3)

    for batch in range(2):
        results = transport.send_many(
            [envelope(batch * 100 + n, f"r{n}@example.com") for n in range(60)]
        )
        assert {r.state for r in results} == {"sent"}

    assert sink.session_count == 3
    assert sink.max_concurrent == 3
    assert len(sink.received) == 120


def test_the_message_arrives_byte_for_byte_with_leading_dots_unstuffed(sinks, relay):
    sink = sinks()
    data = message(1, "a@example.com", body=".hidden\r\n..two dots\r\n.")
    relay(sink).send_many([envelope(1, "a@example.com", message=data)])

    assert sink.received[0].data == data
    assert sink.received[0].mail_from == "b+1@bounces.brand.example"
    assert sink.received[0].rcpt_tos == ["a@example.com"]


def test_starttls_with_a_certificate_trusted_through_the_ca_file(sinks, relay, certificate):
    sink = sinks(starttls=True, certificate=certificate)
    transport = relay(sink, security="starttls", ca_file=certificate[0])

    results = transport.send_many([envelope(1, "a@example.com")])

    assert results[0].state == "sent"
    assert sink.received[0].is_tls


def test_implicit_tls(sinks, relay, certificate):
    sink = sinks(implicit_tls=True, certificate=certificate)
    transport = relay(sink, security="tls", ca_file=certificate[0])

    results = transport.send_many([envelope(1, "a@example.com"), envelope(2, "b@example.com")])

    assert states(results) == {1: "sent", 2: "sent"}
    assert all(received.is_tls for received in sink.received)


def test_an_untrusted_certificate_is_a_configuration_error(sinks, relay, certificate):
    sink = sinks(starttls=True, certificate=certificate)
    transport = relay(sink, security="starttls")  # the system's trust store only

    with pytest.raises(TransportConfigError, match="certificate"):
        transport.send_many([envelope(1, "a@example.com")])
    assert sink.received == []


def test_starttls_required_but_not_offered_is_a_configuration_error(sinks, relay):
    sink = sinks()

    with pytest.raises(TransportConfigError, match="does not offer STARTTLS"):
        relay(sink, security="starttls").send_many([envelope(1, "a@example.com")])


def test_auth_over_starttls(sinks, relay, certificate):
    sink = sinks(starttls=True, certificate=certificate, auth=("relay-user", "s3cret"))
    transport = relay(
        sink,
        security="starttls",
        ca_file=certificate[0],
        username="relay-user",
        password="s3cret",
    )

    results = transport.send_many([envelope(1, "a@example.com")])

    assert results[0].state == "sent"
    assert sink.received[0].authenticated_as == "relay-user"


def test_refused_credentials_raise_a_configuration_error_before_anything_is_sent(
    sinks, relay, certificate
):
    sink = sinks(starttls=True, certificate=certificate, auth=("relay-user", "s3cret"))
    transport = relay(
        sink, security="starttls", ca_file=certificate[0], username="relay-user", password="no"
    )

    with pytest.raises(TransportConfigError, match="refused the credentials: 535"):
        transport.send_many([envelope(n, f"r{n}@example.com") for n in range(5)])
    assert sink.received == []


def test_without_credentials_a_relay_that_requires_auth_refuses_per_message(
    sinks, relay, certificate
):
    sink = sinks(starttls=True, certificate=certificate, auth=("relay-user", "s3cret"))

    results = relay(sink, security="starttls", ca_file=certificate[0]).send_many(
        [envelope(1, "a@example.com")]
    )

    assert results[0].state == "bounced"
    assert results[0].smtp_code == 530
    assert results[0].bounce_class == "block"  # never the contact's fault


@pytest.mark.parametrize("pipelining", [True, False])
def test_each_recipient_gets_its_own_answer_in_one_batch(sinks, relay, pipelining):
    sink = sinks(rules={"later@*": "451-once", "gone@*": "550"}, pipelining=pipelining)
    transport = relay(sink, connections=1)
    batch = [
        envelope(1, "first@example.com"),
        envelope(2, "later@example.com"),
        envelope(3, "gone@example.com"),
        envelope(4, "last@example.com"),
    ]

    results = transport.send_many(batch)

    assert states(results) == {1: "sent", 2: "deferred", 3: "bounced", 4: "sent"}
    deferred, bounced = results[1], results[2]
    assert (deferred.smtp_code, deferred.enhanced_code) == (451, "4.3.0")
    assert deferred.bounce_class == ""
    assert (bounced.smtp_code, bounced.enhanced_code, bounced.bounce_class) == (
        550,
        "5.1.1",
        "hard",
    )
    assert "User unknown" in bounced.response
    assert sink.sessions[0].pipelined == pipelining  # MAIL, RCPT and DATA in one write
    # A refused RCPT is followed by RSET and the session goes on.
    assert "RSET" in sink.sessions[0].commands
    assert sink.session_count == 1
    assert [r.rcpt_tos for r in sink.received] == [["first@example.com"], ["last@example.com"]]

    retry = transport.send_many([envelope(2, "later@example.com")])
    assert retry[0].state == "sent"


def test_recipients_of_the_same_message_share_one_transaction(sinks, relay):
    sink = sinks(rules={"gone@*": "550"})
    data = message(7)
    batch = [
        envelope(n, address, mail_from="system@brand.example", message=data)
        for n, address in enumerate(["a@example.com", "gone@example.com", "c@example.com"])
    ]

    results = relay(sink).send_many(batch)

    assert states(results) == {0: "sent", 1: "bounced", 2: "sent"}
    assert len(sink.received) == 1
    assert sink.received[0].rcpt_tos == ["a@example.com", "c@example.com"]


def test_a_drop_after_the_final_dot_is_unknown_and_the_others_are_sent(sinks, relay):
    sink = sinks(rules={"lost@*": "drop-after-dot"})
    transport = relay(sink, connections=1)
    batch = [envelope(n, f"{name}@example.com") for n, name in enumerate(["a", "lost", "b", "c"])]

    results = transport.send_many(batch)

    assert states(results) == {0: "sent", 1: "unknown", 2: "sent", 3: "sent"}
    assert results[1].smtp_code is None
    assert "after the final dot" in results[1].response
    # It did arrive: exactly the case `unknown` exists for.
    assert [r.dropped for r in sink.to("lost@example.com")] == [True]
    assert len(sink.to("lost@example.com")) == 1  # and it was not sent twice
    assert sink.session_count == 2


def test_a_drop_before_data_is_retried_once_on_a_new_connection(sinks, relay):
    sink = sinks(rules={"flaky@*": "drop-at-rcpt-once"})

    results = relay(sink, connections=1).send_many(
        [envelope(1, "a@example.com"), envelope(2, "flaky@example.com")]
    )

    assert states(results) == {1: "sent", 2: "sent"}
    assert len(sink.to("flaky@example.com")) == 1
    assert sink.session_count == 2


def test_a_drop_before_data_on_the_retry_too_is_deferred(sinks, relay):
    sink = sinks(rules={"broken@*": "drop-at-rcpt"})

    results = relay(sink, connections=1).send_many(
        [envelope(1, "broken@example.com"), envelope(2, "b@example.com")]
    )

    assert states(results) == {1: "deferred", 2: "sent"}
    assert results[0].smtp_code is None
    assert "before the message was handed over" in results[0].response
    assert sink.to("broken@example.com") == []


def test_a_stale_pooled_connection_is_replaced_without_losing_the_message(sinks, relay):
    sink = sinks()
    transport = relay(sink, connections=1)
    transport.send_many([envelope(1, "a@example.com")])
    sink.stop()  # the server goes away; the pooled connection is dead
    time.sleep(0.1)
    sink2 = sinks(port=sink.port)

    results = transport.send_many([envelope(2, "b@example.com")])

    assert results[0].state == "sent"
    assert len(sink2.received) == 1


def test_a_pooled_connection_closed_by_the_server_does_not_use_up_the_retry(sinks, relay):
    sink = sinks(rules={"b@*": "drop-at-rcpt-once"})
    transport = relay(sink, connections=1)
    transport.send_many([envelope(1, "a@example.com")])
    # While idle in the pool, the server times the session out: 421 to the next command.
    sink.mail_replies.append("421 4.4.2 sink.test Error: timeout exceeded")

    results = transport.send_many([envelope(2, "b@example.com")])

    # The dead pooled session, then a drop before DATA, then the one retry: sent.
    assert results[0].state == "sent"
    assert sink.session_count == 3
    assert len(sink.to("b@example.com")) == 1


def test_an_eai_recipient_goes_with_smtputf8_when_offered(sinks, relay):
    sink = sinks(smtputf8=True)

    results = relay(sink).send_many([envelope(1, "josé@example.com")])

    assert results[0].state == "sent"
    received = sink.received[0]
    assert received.rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in received.mail_options
    assert "=?" not in received.rcpt_tos[0]


def test_an_eai_recipient_fails_clearly_when_smtputf8_is_not_offered(sinks, relay):
    sink = sinks(smtputf8=False)

    results = relay(sink).send_many(
        [envelope(1, "josé@example.com"), envelope(2, "jose@example.com")]
    )

    assert states(results) == {1: "failed", 2: "sent"}
    assert "does not offer SMTPUTF8" in results[0].response
    assert [r.rcpt_tos for r in sink.received] == [["jose@example.com"]]
    assert sink.rcpt_seen["josé@example.com"] == 0  # never put on the wire, encoded or not


def test_an_internationalised_domain_goes_as_its_a_label_without_smtputf8(sinks, relay):
    sink = sinks(smtputf8=False)

    results = relay(sink).send_many([envelope(1, "user@bücher.example")])

    assert results[0].state == "sent"
    assert sink.received[0].rcpt_tos == ["user@xn--bcher-kva.example"]


def test_an_address_that_cannot_go_on_the_wire_fails_without_a_connection(sinks, relay):
    sink = sinks()
    transport = relay(sink)

    results = transport.send_many([envelope(1, "bad\r\nRCPT TO:<x@evil.example>@example.com")])

    assert results[0].state == "failed"
    assert results[0].bounce_class == "hard"
    assert sink.session_count == 0


def test_a_relay_that_is_down_defers_every_message(relay, free_port):
    class Down:
        host, port = "127.0.0.1", free_port()

    results = relay(Down, connections=3).send_many(
        [envelope(n, f"r{n}@example.com") for n in range(10)]
    )

    assert {r.state for r in results} == {"deferred"}
    assert "unavailable" in results[0].response


def test_a_relay_that_caps_its_sessions_still_gets_the_whole_batch(sinks, relay):
    sink = sinks()
    transport = relay(sink, connections=4)
    # Only one session at a time is welcome: the others are turned away at the greeting.
    original = sink._session_start

    def one_at_a_time(server):
        original(server)
        if len(sink._open) > 1:
            server.transport.abort()

    sink._session_start = one_at_a_time

    results = transport.send_many([envelope(n, f"r{n}@example.com") for n in range(12)])

    assert {r.state for r in results} == {"sent"}
    assert len(sink.received) == 12
    assert transport.connections_opened > 1  # the turned-away connections gave their jobs back


def test_transport_for_keeps_one_instance_per_configuration(settings, db):
    settings.SENDING_TRANSPORT = "smtp"
    settings.SENDING_SMTP_PORT = 2599
    transports_close()
    try:
        first = transport_for(None)
        assert transport_for(None) is first
        assert isinstance(first, SmtpTransport)
        assert first.port == 2599

        pool = IpPool.objects.create(name="Direct", transport="mx")
        assert isinstance(transport_for(pool), MxTransport)
        assert transport_for(IpPool(name="Default", transport="")) is first

        settings.SENDING_SMTP_PORT = 2600
        assert transport_for(None) is not first
    finally:
        transports_close()
    assert transport_for(None) is not first
    transports_close()


def test_an_unknown_transport_name_is_a_configuration_error(settings):
    settings.SENDING_TRANSPORT = "carrier-pigeon"
    with pytest.raises(TransportConfigError, match="Unknown transport"):
        transport_for(None)


def test_the_faulty_sink_runs_as_a_process_and_records_what_it_accepts(relay, free_port, tmp_path):
    port = free_port()
    record = tmp_path / "sink.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sending.sinks",
            "--port",
            str(port),
            "--behaviour",
            "gone@*=550",
            "--record",
            str(record),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == f"READY {port}"

        class Sink:
            host = "127.0.0.1"

        Sink.port = port
        results = relay(Sink).send_many(
            [envelope(1, "a@example.com"), envelope(2, "gone@example.com")]
        )
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert states(results) == {1: "sent", 2: "bounced"}
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(line["rcpt_tos"], line["message_id"]) for line in lines] == [
        (["a@example.com"], "<1@brand.example>")
    ]
