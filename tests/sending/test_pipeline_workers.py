"""The send pipeline on real worker processes: the periodic start task, carried by the
broker, snapshots a due campaign and fans out send tasks; two worker processes on the `send`
queue claim chunks side by side; each recipient gets the message once, and the last send
task marks the campaign sent.

The helpers here (a loopback sink that knows which client port sent each message, worker
environment, a campaign with a large audience made at SQL speed, a worker's ports read from
/proc) are shared with test_priority_lane.py.
"""

import asyncio
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact, Subscription
from sending.models import CampaignSend, Delivery, SendingDomain
from sending.services.domains import sending_domain_add, sending_domain_check
from sending.tasks import campaigns_start_due_task
from tests.factories import ContactListFactory, WorkspaceFactory
from tests.sending.conftest import publish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.serial]

DOMAIN = "news.shop.example"


# --- shared helpers ------------------------------------------------------------------------


@dataclass
class Arrival:
    recipient: str
    peer_port: int  # the client's source port: tells which worker process sent it
    at: float  # time.monotonic() when the final dot arrived


@dataclass
class PortSink:
    """An SMTP server on loopback that notes, per recipient, when and from which client port
    a message arrived, and holds each DATA reply for `data_delay` seconds (a slow relay).
    The bytes are kept only for the recipients in `keep` (a campaign's would fill memory)."""

    data_delay: float = 0.0
    keep: set[str] = field(default_factory=set)
    kept: dict[str, bytes] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    async def handle_DATA(self, server, session, envelope):
        at = time.monotonic()
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.arrivals.append(Arrival(rcpt, session.peer[1], at))
                if rcpt in self.keep:
                    self.kept[rcpt] = envelope.original_content
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 Queued"

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def start(self, port: int) -> Controller:
        self.port = port
        # server_hostname given, so that aiosmtpd never looks up this host's FQDN.
        controller = Controller(
            self, hostname="127.0.0.1", port=port, server_hostname="sink.test", ready_timeout=10
        )
        controller.start()
        return controller


def worker_environment(monkeypatch, settings, *, sink_port: int, **extra: str) -> None:
    """Point worker processes started after this at the sink: campaign mail (the `smtp`
    transport) and system mail (the platform backend over the same transport) alike.

    celery_worker_process copies os.environ when it is set up, so fixtures call this first.
    It also turns inline tasks off in settings: the Celery app configures itself on first
    use, and then espsite.celery re-applies settings.CELERY_TASK_ALWAYS_EAGER (True in tests)
    over the `task_always_eager = False` that celery_worker_process wrote before.
    """
    settings.CELERY_TASK_ALWAYS_EAGER = False
    values = {
        "SENDING_TRANSPORT": "smtp",
        "SENDING_SMTP_HOST": "127.0.0.1",
        "SENDING_SMTP_PORT": str(sink_port),
        "SENDING_SMTP_SECURITY": "none",
        "SENDING_SMTP_USERNAME": "",
        "SENDING_SMTP_PASSWORD": "",
        "EMAIL_BACKEND": "sending.backends.PlatformEmailBackend",
        **extra,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def worker_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets that process `pid` holds (from /proc; no psutil here)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = list(fd_dir.iterdir())
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return set()
    for line in lines:
        fields = line.split()
        if fields[9] in inodes:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class PortOwners:
    """Which worker process owns which client port, sampled while the connections are open."""

    def __init__(self, processes: dict[str, int]):
        self.processes = processes  # name -> pid
        self.owner: dict[int, str] = {}

    def sample(self) -> None:
        for name, pid in self.processes.items():
            for port in worker_ports(pid):
                self.owner[port] = name

    def count(self, arrivals: list[Arrival]) -> Counter[str]:
        return Counter(self.owner.get(arrival.peer_port, "?") for arrival in arrivals)


def wait_for_workers(prefix: str, count: int, timeout: float = 30) -> None:
    """Until `count` idle workers whose names start with `prefix` answer a ping."""
    from espsite.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        names = {name for reply in replies for name in reply}
        if sum(name.startswith(prefix) for name in names) >= count:
            return
    pytest.fail(f"{count} worker(s) named {prefix}* did not answer within {timeout} s")


def campaign_with_audience(dns_server, count: int) -> Campaign:
    """A due campaign from a verified domain to `count` subscribed contacts, the contacts
    written with set-based SQL (tens of thousands in well under a second)."""
    workspace = WorkspaceFactory(postal_address="1 Harbour Street, Bristol")
    domain = sending_domain_add(workspace=workspace, domain=DOMAIN, acting_user=None)
    publish(dns_server, domain)
    sending_domain_check(domain=domain)
    # An established domain: the new-domain warm-up has its own tests (shaping/).
    SendingDomain.objects.filter(pk=domain.pk).update(is_warmed_up=True)
    contact_list = ContactListFactory(workspace=workspace)
    contacts, subscriptions = Contact._meta.db_table, Subscription._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {contacts} (workspace_id, email, first_name, last_name, attributes, "
            "status, created_at, updated_at) "
            "SELECT %s, 'reader' || i || '@mail' || (i %% 7) || '.test', 'R' || i, '', "
            "'{}'::jsonb, 'active', now(), now() FROM generate_series(0, %s - 1) AS i",
            [workspace.pk, count],
        )
        cursor.execute(
            f"INSERT INTO {subscriptions} (workspace_id, contact_id, contact_list_id, status, "
            f"created_at) SELECT %s, id, %s, 'subscribed', now() FROM {contacts} "
            "WHERE workspace_id = %s",
            [workspace.pk, contact_list.pk, workspace.pk],
        )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring",
        subject="Hi {{ first_name }}",
        from_name="Shop",
        from_email=f"hello@{DOMAIN}",
        html=(
            '<p>Hello {{ first_name }}</p><p><a href="https://shop.example/sale">Sale</a></p>'
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
        ),
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    campaign.include_lists.add(contact_list)
    with connection.cursor() as cursor:
        # Statistics, as autovacuum would have gathered them for a list loaded before the
        # send: on never-analysed tables the planner expects one row per side and nests the
        # audience join, and a 20,000-contact snapshot takes 20 s instead of under one.
        cursor.execute(f"ANALYZE {contacts}, {subscriptions}")
    return campaign


# --- the test ----------------------------------------------------------------------------


@pytest.fixture
def sink(free_port):
    handler = PortSink()
    controller = handler.start(free_port())
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def worker_env(sink, monkeypatch, settings) -> None:
    worker_environment(monkeypatch, settings, sink_port=sink.port)


@pytest.fixture
def workers(worker_env, celery_worker_process):
    """celery_worker_process, started after worker_env (it copies os.environ when set up)."""
    return celery_worker_process


def test_two_send_workers_deliver_a_started_campaign_once_each_and_finish_it(
    workers, sink, dns_server
):
    """No beat and no sweep run here: only the start task and the send tasks it fans out."""
    recipients = 2000
    workers(queues="default", name="starter")
    send_processes = {f"send{i}": workers(queues="send", name="send").pid for i in (1, 2)}
    campaign = campaign_with_audience(dns_server, recipients)
    wait_for_workers("send", 2)
    wait_for_workers("starter", 1)
    owners = PortOwners(send_processes)

    started_at = time.monotonic()
    started = campaigns_start_due_task.delay()

    deadline = started_at + 45
    while time.monotonic() < deadline:
        owners.sample()
        campaign.refresh_from_db()
        if campaign.status == Campaign.Status.SENT:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started_at
    owners.sample()

    assert started.get(timeout=5) == [campaign.pk]
    states = Delivery.objects.filter(campaign=campaign).values_list("state", flat=True)
    assert campaign.status == Campaign.Status.SENT, (
        f"still {campaign.status} after {elapsed:.1f} s; deliveries: {Counter(states)}"
    )
    arrivals = sink.snapshot()
    received = Counter(arrival.recipient for arrival in arrivals)
    assert len(received) == recipients
    assert set(received.values()) == {1}, received.most_common(3)
    assert received.keys() == set(
        Contact.objects.filter(workspace=campaign.workspace).values_list("email", flat=True)
    )
    assert Delivery.objects.filter(campaign=campaign, state=Delivery.State.SENT).count() == (
        recipients
    )
    assert CampaignSend.objects.get(campaign=campaign).finished_at is not None
    # Every message left from one of the two send processes, and each took a share of the
    # chunks: the work spreads over whatever listens on `send`.
    shares = owners.count(arrivals)
    print(f"{recipients} sent in {elapsed:.1f} s by two send workers: {dict(shares)}")
    assert sum(shares[name] for name in send_processes) == recipients, shares
    for name in send_processes:
        assert shares[name] >= recipients // 10, shares
