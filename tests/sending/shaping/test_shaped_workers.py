"""Per-IP provider rates hold across worker processes: two real Celery workers send one
campaign of Gmail recipients straight to their MX (the `mx` transport, a loopback sink as
Google's MX) from two sending IPs, and the sink, counting with its own clock, never sees
more than the provider's rate per window from either IP, although both workers share both
IPs; the whole audience still arrives, once each.

The workers get everything through their environment (espsite/settings.py reads it):
the loopback DNS server that answers gmail.com's MX, the sink's port as SENDING_MX_PORT,
and a throttle window of two seconds so that a test of a few windows takes seconds.
"""

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest
from django.db import connection

from campaigns.models import Campaign
from contacts.models import Contact
from sending.models import Delivery, IpPool, ProviderLimit, SendingIp
from sending.services.deliveries import send_start
from sending.tasks import campaign_send_fan_out
from tests.sending.test_pipeline_workers import (
    PortOwners,
    PortSink,
    campaign_with_audience,
    wait_for_workers,
    worker_environment,
)
from tests.sending.test_transport_mx import route

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.serial]

WINDOW_SECONDS = 2.0
PER_WINDOW = 20  # Gmail's messages per window from one IP
SOURCE_IPS = ("127.0.0.2", "127.0.0.3")
RECIPIENTS = 200


@dataclass
class SourceSink(PortSink):
    """A PortSink that also notes the client's address: which sending IP a message left from."""

    sources: list[tuple[str, str, float]] = field(default_factory=list)  # (rcpt, address, at)

    async def handle_DATA(self, server, session, envelope):
        at = time.monotonic()
        with self.lock:
            self.sources += [(rcpt, session.peer[0], at) for rcpt in envelope.rcpt_tos]
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sink(free_port):
    handler = SourceSink()
    controller = handler.start(free_port())
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def worker_env(sink, dns_server, monkeypatch, settings) -> None:
    settings.THROTTLE_WINDOW_SECONDS = WINDOW_SECONDS
    worker_environment(
        monkeypatch,
        settings,
        sink_port=sink.port,
        SENDING_MX_PORT=str(sink.port),
        DNS_RESOLVERS=dns_server.address,
        DNS_TIMEOUT_SECONDS="0.4",
        DNS_RETRIES="1",
        THROTTLE_WINDOW_SECONDS=str(WINDOW_SECONDS),
        # Small chunks: many claims per window, spread over both workers and both IPs.
        SENDING_CHUNK_SIZE="10",
    )


@pytest.fixture
def workers(worker_env, celery_worker_process):
    """celery_worker_process, set up after worker_env (it copies os.environ when set up)."""
    return celery_worker_process


def _gmail_campaign(dns_server) -> Campaign:
    campaign = campaign_with_audience(dns_server, RECIPIENTS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Contact._meta.db_table} SET email = 'reader' || id || '@gmail.com' "
            "WHERE workspace_id = %s",
            [campaign.workspace_id],
        )
    route(dns_server, "gmail.com", (10, "gmail-smtp-in.l.google.test", "127.0.0.1"))
    pool = IpPool.objects.create(name="Shared", is_default=True, transport="mx")
    for address in SOURCE_IPS:
        SendingIp.objects.create(
            address=address,
            pool=pool,
            helo_hostname=f"mta-{address.rsplit('.', 1)[1]}.shop.test",
            bound_host="",
            state=SendingIp.State.ACTIVE,
        )
    ProviderLimit.objects.update_or_create(
        provider="google",
        defaults={"messages_per_minute": round(PER_WINDOW * 60 / WINDOW_SECONDS)},
    )
    return campaign


def _busiest_window(times: list[float]) -> list[float]:
    """The arrivals of the WINDOW_SECONDS-long interval, wherever it starts, that holds most."""
    times = sorted(times)
    busiest: list[float] = []
    first = 0
    for last, at in enumerate(times):
        while at - times[first] >= WINDOW_SECONDS:
            first += 1
        if last - first + 1 > len(busiest):
            busiest = times[first : last + 1]
    return busiest


def test_two_workers_keep_each_ips_gmail_rate_per_window_and_send_everyone_once(
    workers, sink, dns_server
):
    campaign = _gmail_campaign(dns_server)
    processes = {f"send{i}": workers(queues="send", name="send").pid for i in (1, 2)}
    send_start(campaign=campaign)
    assert set(Delivery.objects.filter(campaign=campaign).values_list("provider", flat=True)) == {
        "google"
    }
    wait_for_workers("send", 2)
    owners = PortOwners(processes)

    started = time.monotonic()
    campaign_send_fan_out(campaign.pk)
    while time.monotonic() < started + 40:
        owners.sample()  # while the workers' sessions are open (kept between chunks)
        campaign.refresh_from_db()
        if campaign.status == Campaign.Status.SENT:
            break
        time.sleep(0.05)
    owners.sample()

    states = Counter(Delivery.objects.filter(campaign=campaign).values_list("state", flat=True))
    assert campaign.status == Campaign.Status.SENT, f"still {campaign.status}: {states}"
    arrivals = sink.snapshot()
    received = Counter(arrival.recipient for arrival in arrivals)
    assert received.keys() == set(
        Contact.objects.filter(workspace=campaign.workspace).values_list("email", flat=True)
    )
    assert set(received.values()) == {1}, received.most_common(3)

    # Each message left from the IP its row was claimed for (the pool's transport bound it).
    by_ip: dict[str, list[float]] = defaultdict(list)
    for _, address, at in sink.sources:
        by_ip[address].append(at)
    assert by_ip.keys() == set(SOURCE_IPS)
    source_of = {rcpt: address for rcpt, address, _ in sink.sources}
    assert source_of == dict(
        Delivery.objects.filter(campaign=campaign).values_list("address", "source_ip")
    )

    # Both processes sent, and on both IPs: the limits held across workers, not inside one.
    sender = {arrival.recipient: owners.owner.get(arrival.peer_port) for arrival in arrivals}
    shares = Counter((sender[rcpt], address) for rcpt, address, _ in sink.sources)
    print(f"{RECIPIENTS} sent in {time.monotonic() - started:.1f} s: {dict(shares)}")
    assert None not in sender.values(), "messages from a port of neither worker"
    for name in processes:
        assert sum(n for (who, _), n in shares.items() if who == name) >= RECIPIENTS // 10
        for address in SOURCE_IPS:
            assert shares[name, address] > 0, shares

    # The rate as the receiver counts it: never more than PER_WINDOW from one IP in any
    # window, and used: an IP's messages took as many windows as the rate demands.
    for address, times in by_ip.items():
        busiest = _busiest_window(times)
        windows = math.ceil(len(times) / PER_WINDOW)
        span = max(times) - min(times)
        print(f"{address}: {len(times)} over {span:.1f} s, at most {len(busiest)} in a window")
        assert len(busiest) <= PER_WINDOW, (
            f"{address}: {len(busiest)} messages within {WINDOW_SECONDS} s, arriving at "
            f"{[round(at - min(times), 3) for at in busiest]} s after its first"
        )
        assert span >= (windows - 1) * WINDOW_SECONDS - 0.5, f"{address}: {span:.1f} s"
