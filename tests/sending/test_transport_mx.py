"""Direct-to-MX delivery: a real DNS server on loopback answers MX records that point at
faulty sinks bound to 127.0.0.2 and 127.0.0.3 (one port, SENDING_MX_PORT)."""

import pytest

from sending.models import IpPool, SendingIp
from sending.transports.base import Envelope
from sending.transports.mx import MxTransport
from tests.sending.sinks import FaultySink, port_free_on, self_signed_certificate

pytestmark = pytest.mark.timeout(60)

MX_HOSTS = ("127.0.0.2", "127.0.0.3")


def message(number: int, to: str) -> bytes:
    return (
        f"From: News <news@brand.example>\r\nTo: {to}\r\nSubject: Issue {number}\r\n"
        f"Message-ID: <{number}@brand.example>\r\n\r\nHello {number}\r\n"
    ).encode()


def envelope(number: int, recipient: str, **fields) -> Envelope:
    fields.setdefault("mail_from", f"b+{number}@bounces.brand.example")
    fields.setdefault("message", message(number, recipient))
    return Envelope(delivery_id=number, recipient=recipient, **fields)


def states(results) -> dict[int, str]:
    return {result.delivery_id: result.state for result in results}


@pytest.fixture
def port():
    return port_free_on(MX_HOSTS)


@pytest.fixture
def sinks(port):
    started: list[FaultySink] = []

    def start(hosts=MX_HOSTS, **options) -> FaultySink:
        sink = FaultySink(hosts=hosts, port=port, **options).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def mx(port, dns_server):
    made: list[MxTransport] = []

    def make(**options) -> MxTransport:
        options.setdefault("concurrency", 50)
        transport = MxTransport(port=port, timeout=5, loopback_only=True, **options)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def route(dns_server, domain: str, *mx: tuple[int, str, str]) -> None:
    """Publish MX records for `domain`: (preference, host name, its address)."""
    dns_server.zone[domain] = {"MX": [f"{pref} {name}." for pref, name, _ in mx]}
    for _, name, address in mx:
        dns_server.zone[name] = {"A": [address]}


def test_the_most_preferred_mx_gets_the_mail(dns_server, sinks, mx):
    sink = sinks()
    # Listed out of order on purpose: the preference decides, not the order of the answer.
    route(
        dns_server,
        "pref.test",
        (20, "mx-b.pref.test", "127.0.0.2"),
        (10, "mx-a.pref.test", "127.0.0.3"),
    )

    results = mx().send_many([envelope(n, f"r{n}@pref.test") for n in range(5)])

    assert {r.state for r in results} == {"sent"}
    assert len(sink.received_by("127.0.0.3")) == 5
    assert sink.received_by("127.0.0.2") == []
    assert results[0].remote_host == "mx-a.pref.test[127.0.0.3]"
    assert results[0].smtp_code == 250


def test_the_next_mx_takes_over_when_the_first_is_down(dns_server, sinks, mx):
    sink = sinks(hosts=("127.0.0.3",))  # nothing listens on 127.0.0.2
    route(
        dns_server,
        "fallback.test",
        (10, "mx1.fallback.test", "127.0.0.2"),
        (20, "mx2.fallback.test", "127.0.0.3"),
    )

    results = mx().send_many([envelope(1, "a@fallback.test"), envelope(2, "b@fallback.test")])

    assert states(results) == {1: "sent", 2: "sent"}
    assert len(sink.received_by("127.0.0.3")) == 2
    assert results[0].remote_host == "mx2.fallback.test[127.0.0.3]"


def test_every_mx_down_defers_with_the_reasons(dns_server, mx):
    route(dns_server, "down.test", (10, "mx1.down.test", "127.0.0.2"))

    results = mx().send_many([envelope(1, "a@down.test")])

    assert results[0].state == "deferred"
    assert "mx1.down.test[127.0.0.2]" in results[0].response
    assert "refused" in results[0].response.lower()


def test_a_domain_without_mx_is_delivered_to_its_own_address(dns_server, sinks, mx):
    sink = sinks()
    dns_server.zone["implicit.test"] = {"A": ["127.0.0.2"]}

    results = mx().send_many([envelope(1, "a@implicit.test")])

    assert results[0].state == "sent"
    assert results[0].remote_host == "implicit.test[127.0.0.2]"
    assert len(sink.received_by("127.0.0.2")) == 1


def test_a_null_mx_bounces_hard_without_a_connection(dns_server, mx):
    dns_server.zone["nomail.test"] = {"MX": ["0 ."], "A": ["127.0.0.2"]}
    transport = mx()

    results = transport.send_many([envelope(1, "a@nomail.test")])

    assert results[0].state == "bounced"
    assert results[0].bounce_class == "hard"
    assert results[0].enhanced_code == "5.1.10"
    assert "null MX" in results[0].response
    assert transport.connections_opened == 0


def test_a_domain_that_does_not_exist_bounces_hard(dns_server, mx):
    results = mx().send_many([envelope(1, "a@no-such-domain.test")])

    assert (results[0].state, results[0].bounce_class) == ("bounced", "hard")
    assert "does not exist" in results[0].response


def test_a_dns_failure_defers(dns_server, mx):
    dns_server.zone["broken.test"] = "SERVFAIL"

    results = mx().send_many([envelope(1, "a@broken.test")])

    assert results[0].state == "deferred"
    assert results[0].enhanced_code == "4.4.3"


def test_starttls_is_used_when_offered_even_with_a_self_signed_certificate(
    dns_server, sinks, mx, tmp_path
):
    sink = sinks(starttls=True, certificate=self_signed_certificate(tmp_path))
    route(dns_server, "tls.test", (10, "mx.tls.test", "127.0.0.2"))

    results = mx().send_many([envelope(1, "a@tls.test")])

    assert results[0].state == "sent"
    assert sink.received[0].is_tls


def test_loopback_only_refuses_a_public_mx_address_without_connecting(dns_server, sinks, mx):
    route(dns_server, "public.test", (10, "mx.public.test", "192.0.2.25"))
    transport = mx()

    results = transport.send_many([envelope(1, "a@public.test")])

    assert results[0].state == "deferred"
    assert "outside loopback" in results[0].response
    assert "192.0.2.25" in results[0].response
    assert transport.connections_opened == 0


def test_a_public_fallback_is_refused_while_the_loopback_mx_serves(dns_server, sinks, mx):
    sink = sinks()
    route(
        dns_server,
        "mixed.test",
        (10, "mx.mixed.test", "192.0.2.25"),
        (20, "lo.mixed.test", "127.0.0.2"),
    )
    transport = mx()

    results = transport.send_many([envelope(1, "a@mixed.test")])

    assert results[0].state == "sent"
    assert transport.connections_opened == 1
    assert len(sink.received) == 1


def test_many_domains_are_delivered_concurrently(dns_server, sinks, mx):
    sink = sinks()
    for d in range(20):
        route(dns_server, f"d{d}.test", (10, f"mx.d{d}.test", MX_HOSTS[d % 2]))
    batch = [envelope(n, f"r{n}@d{n % 20}.test") for n in range(200)]

    results = mx(concurrency=50).send_many(batch)

    assert {r.state for r in results} == {"sent"}
    assert len(sink.received) == 200
    assert sink.max_concurrent > 1
    assert sink.session_count <= 40


def test_sessions_never_exceed_the_concurrency_setting(dns_server, sinks, mx):
    sink = sinks()
    for d in range(12):
        route(dns_server, f"c{d}.test", (10, f"mx.c{d}.test", "127.0.0.2"))

    results = mx(concurrency=3).send_many([envelope(n, f"r{n}@c{n % 12}.test") for n in range(48)])

    assert {r.state for r in results} == {"sent"}
    assert sink.max_concurrent <= 3


def test_a_destination_keeps_its_connection_across_batches_and_the_route_is_cached(
    dns_server, sinks, mx
):
    sink = sinks()
    route(dns_server, "reuse.test", (10, "mx.reuse.test", "127.0.0.2"))
    transport = mx()

    for batch in range(3):
        results = transport.send_many(
            [envelope(batch * 10 + n, f"r{n}@reuse.test") for n in range(5)]
        )
        assert {r.state for r in results} == {"sent"}

    assert sink.session_count == 1
    assert transport.connections_opened == 1
    assert dns_server.queries_for("reuse.test", "MX") == 1


def test_domains_hosted_on_one_mx_share_its_idle_session(dns_server, sinks, mx):
    sink = sinks()
    route(dns_server, "one.test", (10, "mx.one.test", "127.0.0.2"))
    route(dns_server, "two.test", (10, "mx.two.test", "127.0.0.2"))
    transport = mx()

    first = transport.send_many([envelope(1, "a@one.test")])
    second = transport.send_many([envelope(2, "b@two.test")])

    assert (first[0].state, second[0].state) == ("sent", "sent")
    assert sink.session_count == 1


def test_each_recipient_gets_its_own_answer(dns_server, sinks, mx):
    sink = sinks(rules={"later@*": "451-once", "gone@*": "550", "lost@*": "drop-after-dot"})
    route(dns_server, "answers.test", (10, "mx.answers.test", "127.0.0.2"))
    names = ["first", "later", "gone", "lost", "last"]

    results = mx().send_many([envelope(n, f"{name}@answers.test") for n, name in enumerate(names)])

    assert states(results) == {0: "sent", 1: "deferred", 2: "bounced", 3: "unknown", 4: "sent"}
    assert (results[2].bounce_class, results[2].enhanced_code) == ("hard", "5.1.1")
    assert [r.dropped for r in sink.to("lost@answers.test")] == [True]


def test_the_source_address_is_bound_and_ehlo_names_its_sending_ip(dns_server, sinks, mx, db):
    sink = sinks()
    route(dns_server, "source.test", (10, "mx.source.test", "127.0.0.2"))
    pool = IpPool.objects.create(name="Direct", transport="mx")
    SendingIp.objects.create(address="127.0.0.9", pool=pool, helo_hostname="mta9.brand.example")

    results = mx().send_many([envelope(1, "a@source.test", source_address="127.0.0.9")])

    assert results[0].state == "sent"
    assert sink.received[0].peer == "127.0.0.9"
    assert sink.received[0].helo == "mta9.brand.example"


def test_an_eai_recipient_needs_smtputf8_at_the_mx(dns_server, sinks, mx):
    sink = sinks(smtputf8=False)
    route(dns_server, "eai.test", (10, "mx.eai.test", "127.0.0.2"))

    results = mx().send_many([envelope(1, "josé@eai.test"), envelope(2, "jose@eai.test")])

    assert states(results) == {1: "failed", 2: "sent"}
    assert "SMTPUTF8" in results[0].response
    assert [r.rcpt_tos for r in sink.received] == [["jose@eai.test"]]


def test_an_eai_recipient_goes_with_smtputf8_when_the_mx_offers_it(dns_server, sinks, mx):
    sink = sinks(smtputf8=True)
    route(dns_server, "eai.test", (10, "mx.eai.test", "127.0.0.2"))

    results = mx().send_many([envelope(1, "josé@eai.test")])

    assert results[0].state == "sent"
    assert sink.received[0].rcpt_tos == ["josé@eai.test"]


def test_a_providers_connection_limits_cap_sessions_and_messages_per_session(dns_server, sinks, mx):
    """Shaped envelopes (sending/shaping.py): no more sessions to a destination than the
    connection slots held, each closed after the provider's messages per connection."""
    sink = sinks(delay=0.02)
    route(dns_server, "limited.test", (10, "mx.limited.test", "127.0.0.2"))
    batch = [
        envelope(n, f"r{n}@limited.test", max_sessions=2, messages_per_session=5) for n in range(40)
    ]

    results = mx().send_many(batch)

    assert {r.state for r in results} == {"sent"}
    assert len(sink.received) == 40
    assert sink.max_concurrent == 2  # without the limit: 2 sessions per 20 messages, up to 10
    assert sink.session_count == 8  # 40 messages, 5 a session


def test_without_limits_a_big_batch_gets_several_sessions(dns_server, sinks, mx):
    sink = sinks(delay=0.02)
    route(dns_server, "open.test", (10, "mx.open.test", "127.0.0.2"))

    results = mx().send_many([envelope(n, f"r{n}@open.test") for n in range(100)])

    assert {r.state for r in results} == {"sent"}
    assert sink.max_concurrent == 5  # one session per 20 messages
