"""The kill switches: the platform's and a workspace's stop new claims within
SENDING_POLICY_CACHE_SECONDS, on this process (clock injected) and on a real worker
process sending a campaign; what was not claimed stays queued and goes once allowed."""

import time

import pytest
from django.db.models import Count

from accounts.models import AuditEntry
from campaigns.models import Campaign
from sending import pipeline, policy
from sending.models import Delivery, PlatformSwitch
from sending.pipeline import campaign_finish_if_done, campaigns_start_due, chunk_send
from sending.services.deliveries import send_start
from sending.services.policy import (
    platform_sending_allow,
    platform_sending_stop,
    workspace_sending_allow,
    workspace_sending_stop,
)
from sending.tasks import campaign_send_fan_out
from tests.sending import test_pipeline
from tests.sending.test_pipeline import campaign_factory, sink  # noqa: F401 (fixtures)
from tests.sending.test_pipeline_workers import (
    PortSink,
    campaign_with_audience,
    wait_for_workers,
    worker_environment,
)

State = Delivery.State


class Ticks:
    """The policy caches' clock, moved by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def only_policy_limits(monkeypatch):
    """This module's claim limit alone (the breaker's batches are tested on their own)."""
    monkeypatch.setattr(pipeline, "claim_limits", [policy.policy_claim_limit])


@pytest.fixture
def ticks(monkeypatch, settings):
    settings.SENDING_POLICY_CACHE_SECONDS = 2.0
    clock = Ticks()
    monkeypatch.setattr(policy, "clock", clock)
    policy.policy_cache_clear()
    yield clock
    policy.policy_cache_clear()


def _states(campaign: Campaign) -> dict[str, int]:
    rows = Delivery.objects.filter(campaign=campaign).values("state").annotate(n=Count("pk"))
    return {row["state"]: row["n"] for row in rows}


def _drain(campaign: Campaign) -> None:
    while (report := chunk_send(campaign_id=campaign.pk, limit=100)) is not None:
        assert not report.throttled


@pytest.mark.django_db
def test_the_platform_switch_stops_claims_once_the_cache_expires_and_allowing_finishes(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    ticks,
):
    campaign = campaign_factory(300)
    assert campaigns_start_due() == [campaign.pk]
    assert chunk_send(campaign_id=campaign.pk, limit=50).claimed == 50

    # Flipped "elsewhere": this test's transaction never commits, so this process's cache
    # is not cleared and behaves as a worker on another host would.
    platform_sending_stop(reason="Incident 42", acting_user=None)
    ticks.now += 1.0  # still within the cache: the chunk already on its way may go
    assert chunk_send(campaign_id=campaign.pk, limit=50).claimed == 50
    ticks.now += 1.1  # past SENDING_POLICY_CACHE_SECONDS: nothing more is claimed
    for _ in range(3):
        report = chunk_send(campaign_id=campaign.pk, limit=50)
        assert report.throttled
        assert report.claimed == 0
    assert _states(campaign) == {State.SENT: 100, State.QUEUED: 200}
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING  # waiting, not failed or paused
    notice = policy.campaign_send_notice(campaign=campaign)
    assert notice.startswith("Sending is paused on the platform")
    assert AuditEntry.objects.filter(verb="platform.sending_stopped").get().details == {
        "reason": "Incident 42"
    }

    platform_sending_allow(acting_user=None)
    ticks.now += 2.1
    _drain(campaign)
    assert campaign_finish_if_done(campaign_id=campaign.pk)
    assert _states(campaign) == {State.SENT: 300}
    assert len({rcpt for _, rcpt, _ in sink.received}) == len(sink.received) == 300
    assert AuditEntry.objects.filter(verb="platform.sending_allowed").exists()


@pytest.mark.django_db
def test_a_workspace_switch_stops_only_that_workspace(
    campaign_factory,  # noqa: F811
    sink,  # noqa: F811
    ticks,
    monkeypatch,
):
    other = campaign_factory(120)
    monkeypatch.setattr(test_pipeline, "DOMAIN", "news.other.example")  # a second workspace
    stopped = campaign_factory(120)
    campaigns_start_due()
    workspace_sending_stop(workspace=stopped.workspace, reason="Unpaid invoice", acting_user=None)
    ticks.now += 2.1

    assert chunk_send(campaign_id=stopped.pk, limit=50).throttled
    _drain(other)
    assert _states(other) == {State.SENT: 120}
    assert _states(stopped) == {State.QUEUED: 120}
    stopped.refresh_from_db()
    assert policy.campaign_send_notice(campaign=stopped) == "Sending stopped: Unpaid invoice"
    entry = AuditEntry.objects.get(verb="workspace.sending_stopped")
    assert entry.workspace == stopped.workspace
    assert entry.details == {"reason": "Unpaid invoice"}
    # A workspace that had no policy keeps no quota and no approval step.
    sending_policy = stopped.workspace.sendingpolicy_set.get()
    assert (sending_policy.daily_quota, sending_policy.requires_approval) == (0, False)

    workspace_sending_allow(workspace=stopped.workspace, acting_user=None)
    ticks.now += 2.1
    _drain(stopped)
    assert _states(stopped) == {State.SENT: 120}
    assert AuditEntry.objects.filter(verb="workspace.sending_allowed").exists()


@pytest.mark.django_db
def test_the_switches_are_read_once_per_cache_period_not_per_chunk(
    workspace, ticks, django_assert_num_queries
):
    with django_assert_num_queries(2):  # the platform switch, the workspace's policy
        assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=200) == 200
    with django_assert_num_queries(0):
        for _ in range(50):
            assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=200) == 200
    ticks.now += 2.1
    PlatformSwitch.objects.create(is_sending_stopped=True, reason="x")
    with django_assert_num_queries(1):  # the platform's switch is on: nothing else to ask
        assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=200) == 0
    with django_assert_num_queries(0):
        assert policy.workspace_allowance(workspace_id=workspace.pk, wanted=200) == 0


# --- on a real worker process ---------------------------------------------------------------

CACHE_SECONDS = 1.0
MARGIN = 1.0


@pytest.fixture
def port_sink(free_port):
    handler = PortSink(data_delay=0.002)  # about 500 messages a second
    controller = handler.start(free_port())
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def worker_env(port_sink, monkeypatch, settings) -> None:
    worker_environment(
        monkeypatch,
        settings,
        sink_port=port_sink.port,
        SENDING_POLICY_CACHE_SECONDS=str(CACHE_SECONDS),
        SENDING_CHUNK_SIZE="20",
        SENDING_FANOUT="1",
    )


@pytest.fixture
def workers(worker_env, celery_worker_process):
    """celery_worker_process, set up after worker_env (it copies os.environ when set up)."""
    return celery_worker_process


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} within {timeout} s")


@pytest.mark.django_db(transaction=True)
@pytest.mark.serial
def test_the_kill_switch_stops_a_running_send_on_a_worker_within_seconds(
    workers, port_sink, dns_server
):
    recipients = 2000
    workers(queues="send", name="send")
    campaign = campaign_with_audience(dns_server, recipients)
    send_start(campaign=campaign)
    wait_for_workers("send", 1)
    campaign_send_fan_out(campaign.pk)
    _wait(lambda: len(port_sink.snapshot()) >= 200, 30, "200 messages did not arrive")

    platform_sending_stop(reason="Kill switch test", acting_user=None)
    flipped = time.monotonic()
    time.sleep(CACHE_SECONDS + MARGIN)
    settled = _states(campaign)
    arrived = len(port_sink.snapshot())
    time.sleep(1.5)

    assert _states(campaign) == settled, "deliveries were claimed after the switch took effect"
    assert settled.get(State.QUEUED, 0) > 0
    assert not settled.get(State.CLAIMED)
    assert not settled.get(State.IN_FLIGHT)
    assert len(port_sink.snapshot()) == arrived < recipients
    late = [a.at - flipped for a in port_sink.snapshot() if a.at > flipped + CACHE_SECONDS + 0.5]
    assert not late, f"messages arrived {late[:3]} s after the switch"

    platform_sending_allow(acting_user=None)

    def sent() -> bool:
        campaign.refresh_from_db()
        return campaign.status == Campaign.Status.SENT

    _wait(sent, 60, "the campaign did not finish after sending was allowed")
    recipients_seen = [a.recipient for a in port_sink.snapshot()]
    assert len(recipients_seen) == len(set(recipients_seen)) == recipients
    assert _states(campaign) == {State.SENT: recipients}
