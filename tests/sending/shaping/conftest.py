"""Shared parts of the shaped-sending tests: a loopback MX sink that notes each message's
source address and arrival time, pools of sending IPs, campaigns to chosen mailbox
providers (written set-based), and a driver that calls chunk_send as send workers would.

The `mx` transport delivers to the MX hosts the loopback DNS server names: gmail.com and
yahoo.com both point at 127.0.0.1, where the sink listens on SENDING_MX_PORT; the shaper
binds each message to its lane's source address (127.0.0.2, 127.0.0.3, ...), which the
sink sees as the peer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign
from contacts.models import Contact, Subscription
from sending.models import IpPool, ProviderLimit, SendingDomain, SendingIp, WarmupSchedule
from sending.pipeline import ChunkReport, chunk_send
from sending.services.domains import sending_domain_add, sending_domain_check
from sending.transports import transports_close
from tests.factories import ContactListFactory, WorkspaceFactory
from tests.sending.conftest import publish
from tests.sending.sinks import SINK_HOSTNAME

SINK_ADDRESS = "127.0.0.1"
# Recipient domains whose MX the sink fixture routes to itself, and their providers
# (two of Google's, so that two Google campaigns can be told apart at the sink).
PROVIDER_DOMAINS = {"gmail.com": "google", "googlemail.com": "google", "yahoo.com": "yahoo"}
SENDER_DOMAIN = "news.shop.example"

# A deferral that asks the sender to slow down (throttle.reply_is_rate_limited: True).
RATE_LIMIT_REPLY = "450 4.7.0 Try again later, too many messages"


# --- the sink ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    recipient: str
    peer: str  # the client's address: the source address the message left from
    at: float  # time.monotonic() at the final dot (accepted) or at RCPT (refused)
    accepted: bool

    @property
    def domain(self) -> str:
        return self.recipient.rsplit("@", 1)[1]


@dataclass
class RecordingSink:
    """An SMTP server on 127.0.0.1 that notes every recipient it is offered: from which
    address and when, and whether it took the message. `refusal(address)` returns the
    reply to refuse a recipient with at RCPT (None: accept)."""

    refusal: Callable[[str], str | None] | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.refusal(address) if self.refusal else None
        if reply:
            with self.lock:
                self.arrivals.append(Arrival(address, session.peer[0], time.monotonic(), False))
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        at = time.monotonic()
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.arrivals.append(Arrival(rcpt, session.peer[0], at, True))
        return "250 2.0.0 Queued"

    def accepted(self, domain: str | None = None) -> list[Arrival]:
        with self.lock:
            found = [a for a in self.arrivals if a.accepted]
        return [a for a in found if domain is None or a.domain == domain]

    def refused(self, domain: str | None = None) -> list[Arrival]:
        with self.lock:
            found = [a for a in self.arrivals if not a.accepted]
        return [a for a in found if domain is None or a.domain == domain]

    def offered(self) -> list[Arrival]:
        """Every recipient offered, accepted or refused, in arrival order."""
        with self.lock:
            return sorted(self.arrivals, key=lambda arrival: arrival.at)


def route_to_sink(dns_server, domain: str) -> None:
    """Publish an MX record for `domain` that names the sink's address."""
    host = f"mx.{domain.replace('.', '-')}.test"
    dns_server.zone[domain] = {"MX": [f"10 {host}."]}
    dns_server.zone[host] = {"A": [SINK_ADDRESS]}


@pytest.fixture
def mx_sink(settings, dns_server, free_port) -> Iterator[RecordingSink]:
    """The sink, as the MX of every PROVIDER_DOMAINS domain, reached by the `mx` transport."""
    sink = RecordingSink(port=free_port())
    controller = Controller(
        sink, hostname=SINK_ADDRESS, port=sink.port, server_hostname=SINK_HOSTNAME
    )
    controller.start()
    for domain in PROVIDER_DOMAINS:
        route_to_sink(dns_server, domain)
    settings.SENDING_TRANSPORT = "mx"
    settings.SENDING_MX_PORT = sink.port
    settings.SENDING_MX_LOOPBACK_ONLY = True
    settings.BASE_URL = "https://esp.example"
    transports_close()
    try:
        yield sink
    finally:
        transports_close()
        controller.stop()


# --- pools, limits, campaigns ----------------------------------------------------------------


def shared_pool(
    *addresses: str,
    state: str = SendingIp.State.ACTIVE,
    bound_host: str = "",
    schedule: Sequence[int] | None = None,
    warmup_started_on=None,
) -> IpPool:
    """The platform's default (shared) pool, sending direct to MX from `addresses`."""
    warmup_schedule = (
        WarmupSchedule.objects.create(name="Test ramp", daily_caps=list(schedule))
        if schedule is not None
        else None
    )
    pool = IpPool.objects.create(
        name="Shared",
        kind=IpPool.Kind.SHARED,
        is_default=True,
        transport="mx",
        warmup_schedule=warmup_schedule,
    )
    for number, address in enumerate(addresses, start=1):
        SendingIp.objects.create(
            address=address,
            pool=pool,
            helo_hostname=f"mta{number}.esp.example",
            bound_host=bound_host,
            state=state,
            warmup_started_on=warmup_started_on,
        )
    return pool


def provider_limit_set(provider: str, **fields) -> ProviderLimit:
    limit, _ = ProviderLimit.objects.update_or_create(provider=provider, defaults=fields)
    return limit


def recipient_address(number: int, domains: Sequence[str]) -> str:
    """The address shaped_campaign gives its contact number `number`."""
    return f"r{number}@{domains[number % len(domains)]}"


def shaped_campaign(
    dns_server,
    *,
    recipients: int,
    recipient_domains: Sequence[str] = ("gmail.com",),
    sender_domain: str = SENDER_DOMAIN,
    domain_warmed_up: bool = True,
) -> Campaign:
    """A due campaign of a new workspace, from a verified domain, to `recipients` subscribed
    contacts (recipient_address(i, recipient_domains)), written with set-based SQL so
    that tens of thousands take about a second."""
    workspace = WorkspaceFactory(postal_address="1 Harbour Street, Bristol")
    domain = sending_domain_add(workspace=workspace, domain=sender_domain, acting_user=None)
    publish(dns_server, domain)
    # The platform's SPF record names the loopback addresses the tests' pools send from.
    dns_server.zone[django_settings.SENDING_SPF_DOMAIN] = {
        "TXT": ["v=spf1 ip4:127.0.0.0/8 ip4:198.51.100.0/24 -all"]
    }
    sending_domain_check(domain=domain)
    if SendingDomain.objects.get(pk=domain.pk).status != SendingDomain.Status.VERIFIED:
        pytest.fail(f"{sender_domain} did not verify: {domain.record_states}")
    SendingDomain.objects.filter(pk=domain.pk).update(is_warmed_up=domain_warmed_up)
    contact_list = ContactListFactory(workspace=workspace)
    contacts, subscriptions = Contact._meta.db_table, Subscription._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {contacts} (workspace_id, email, first_name, last_name, attributes, "
            "status, created_at, updated_at) "
            "SELECT %s, 'r' || i || '@' || (%s::text[])[1 + i %% %s], 'R' || i, '', "
            "'{}'::jsonb, 'active', now(), now() FROM generate_series(0, %s - 1) AS i",
            [workspace.pk, list(recipient_domains), len(recipient_domains), recipients],
        )
        cursor.execute(
            f"INSERT INTO {subscriptions} (workspace_id, contact_id, contact_list_id, status, "
            f"created_at) SELECT %s, id, %s, 'subscribed', now() FROM {contacts} "
            "WHERE workspace_id = %s",
            [workspace.pk, contact_list.pk, workspace.pk],
        )
        if recipients > 1000:
            # Statistics, as autovacuum would have them for a list loaded before the send.
            cursor.execute(f"ANALYZE {contacts}, {subscriptions}")
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring",
        subject="Hi {{ first_name }}",
        from_name="Shop",
        from_email=f"hello@{sender_domain}",
        html=(
            '<p>Hello {{ first_name }}</p><p><a href="https://shop.example/sale">Sale</a></p>'
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
        ),
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    campaign.include_lists.add(contact_list)
    return campaign


# --- driving the pipeline ------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One chunk_send call: which campaign, when it returned, and its report."""

    campaign_id: int
    at: float
    report: ChunkReport | None

    @property
    def claimed(self) -> int:
        return self.report.claimed if self.report is not None else 0

    @property
    def is_long_wait(self) -> bool:
        return bool(self.report and self.report.throttled and self.report.retry_after is None)


def send_rounds(
    campaign_ids: Sequence[int],
    *,
    limit: int | None = None,
    until: Callable[[list[Step]], bool] = lambda steps: False,
    timeout: float = 15.0,
) -> list[Step]:
    """Call chunk_send for each campaign as its own send worker would: again at once after a
    chunk, after `retry_after` when throttled. A campaign drops out when nothing is
    claimable (None) or on a long wait (retry_after None); the rounds end when none is
    left or `until(steps)` holds. Fails after `timeout` seconds."""
    steps: list[Step] = []
    next_at = dict.fromkeys(campaign_ids, 0.0)
    deadline = time.monotonic() + timeout
    while next_at and not until(steps):
        campaign_id = min(next_at, key=next_at.__getitem__)
        pause = next_at[campaign_id] - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() > deadline:
            pytest.fail(f"Still sending after {timeout} s: {steps[-5:]}")
        report = chunk_send(campaign_id=campaign_id, limit=limit)
        step = Step(campaign_id, time.monotonic(), report)
        steps.append(step)
        if report is None or step.is_long_wait:
            del next_at[campaign_id]
        elif report.throttled:
            next_at[campaign_id] = step.at + report.retry_after
        else:
            next_at[campaign_id] = step.at
    return steps
