"""The priority lane: a double opt-in confirmation goes out within seconds while a large
campaign keeps every bulk worker busy, because system mail has its own queue
(`transactional`) and its own worker process.

Everything is real: worker processes on the test database and Redis, a campaign of 20,000
deliveries fanned out on the `send` queue, the public signup service, and one SMTP server on
loopback that both kinds of mail reach (told apart by recipient). The relay answers each
DATA after a short pause, whoever sends, so that the campaign outlasts the test.
"""

import time
from email import message_from_bytes, policy

import pytest

from contacts.services.signup import SignupOutcome, signup_submit
from sending.models import Delivery
from sending.services.deliveries import send_start
from sending.tasks import campaign_send_fan_out
from tests.contacts.signup_factories import SignupFormFactory
from tests.sending.test_pipeline_workers import (
    PortOwners,
    PortSink,
    campaign_with_audience,
    wait_for_workers,
    worker_environment,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.serial]

AUDIENCE = 20_000
DATA_DELAY = 0.005  # seconds the relay holds each DATA reply: caps the campaign at 1,600 a second
NEWCOMER = "newcomer@signup.example"
BUSY_AFTER = 400  # campaign messages delivered before the signup: two chunks of 200


@pytest.fixture
def sink(free_port):
    handler = PortSink(data_delay=DATA_DELAY, keep={NEWCOMER})
    controller = handler.start(free_port())
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def worker_env(sink, monkeypatch, settings) -> None:
    worker_environment(monkeypatch, settings, sink_port=sink.port)


@pytest.fixture
def lane_workers(worker_env, celery_worker_process):
    """celery_worker_process, set up after worker_env (it copies os.environ when set up)."""
    return celery_worker_process


def _last_arrival(owners: PortOwners, sink: PortSink, name: str) -> float:
    owners.sample()
    times = [a.at for a in sink.snapshot() if owners.owner.get(a.peer_port) == name]
    return max(times, default=0.0)


def test_a_confirmation_overtakes_a_campaign_that_keeps_every_bulk_worker_busy(
    lane_workers, sink, dns_server
):
    began = time.monotonic()
    bulk = {f"bulk{i}": lane_workers(queues="send", name="bulk").pid for i in (1, 2)}
    lane = {"lane": lane_workers(queues="transactional", name="lane").pid}
    campaign = campaign_with_audience(dns_server, AUDIENCE)

    form = SignupFormFactory(workspace=campaign.workspace)
    assert send_start(campaign=campaign).deliveries_total == AUDIENCE
    snapshotted = time.monotonic()
    wait_for_workers("bulk", 2)
    wait_for_workers("lane", 1)
    owners = PortOwners({**bulk, **lane})
    fanned_out = time.monotonic()
    campaign_send_fan_out(campaign.pk)

    # Busy: a few chunks delivered, and every bulk worker process handed the relay campaign
    # mail within the last half second (a solo worker delivering has no free slot).
    deadline = time.monotonic() + 30
    while True:
        now = time.monotonic()
        if len(sink.snapshot()) >= BUSY_AFTER and all(
            now - _last_arrival(owners, sink, name) < 0.5 for name in bulk
        ):
            break
        assert now < deadline, f"bulk workers never all busy: {owners.count(sink.snapshot())}"
        time.sleep(0.05)
    sent_before = len(sink.snapshot())

    triggered_at = time.monotonic()
    outcome = signup_submit(
        form=form, email=NEWCOMER, consent_given=True, ip="127.0.0.1", user_agent="pytest"
    )
    assert outcome == SignupOutcome.CONFIRMATION_SENT
    while not sink.kept and time.monotonic() < triggered_at + 15:
        time.sleep(0.01)
    arrivals = sink.snapshot()
    confirmation = next((a for a in arrivals if a.recipient == NEWCOMER), None)
    assert confirmation is not None, "the confirmation never reached the sink"
    latency = confirmation.at - triggered_at
    queued = Delivery.objects.filter(campaign=campaign, state=Delivery.State.QUEUED).count()
    owners.sample()

    # Still busy after the confirmation arrived: each bulk worker delivers again.
    busy_after = {}
    for name in bulk:
        while time.monotonic() < confirmation.at + 5:
            last = _last_arrival(owners, sink, name)
            if last > confirmation.at:
                busy_after[name] = last - confirmation.at
                break
            time.sleep(0.02)
    print(
        f"set-up and snapshot of {AUDIENCE} {snapshotted - began:.1f} s, workers ready "
        f"{fanned_out - began:.1f} s; busy after {triggered_at - fanned_out:.1f} s with "
        f"{sent_before} campaign messages delivered; the confirmation reached the sink "
        f"{latency:.2f} s after the signup, {queued} deliveries still queued; "
        f"messages per process: {dict(owners.count(arrivals))}"
    )

    assert latency < 5
    assert queued > 0
    assert busy_after.keys() == bulk.keys(), busy_after
    # It went through the transactional worker, not through a bulk one.
    assert owners.owner.get(confirmation.peer_port) == "lane"
    message = message_from_bytes(sink.kept[NEWCOMER], policy=policy.default)
    assert message["Subject"].startswith("Please confirm your subscription")
    assert "/f/confirm/" in message.get_body(("plain",)).get_content()
