"""Crash tests of the send pipeline on real processes: Celery workers and beat, a PostgreSQL
and a Redis of the test's own (restarted at will), and a slow, faulty SMTP sink that records
every message it accepts. Leases last 2 s and the sweep runs every second.

What they prove: a send finishes without a manual step whatever dies on the way; a message
is never sent twice; the only messages whose fate is not known are those that were in
flight when a worker died.
"""

import signal
import time
from collections import Counter

import pytest

from tests.sending.crash.harness import duplicates, wait_for

pytestmark = [pytest.mark.serial, pytest.mark.timeout(240)]

FINISH_SECONDS = 150  # from launch to `sent`, crashes included


def _sent_within(run, seconds: float) -> None:
    try:
        wait_for(lambda: run.ledger.status() == "sent", timeout=seconds, what="the campaign")
    except TimeoutError:
        pytest.fail(f"Not sent in {seconds:.0f} s: {run.ledger.by_state()}")


def _freeze_holding(run, name: str, *, states: set[str], tries: int = 25) -> tuple[str, set[int]]:
    """SIGSTOP the worker at a moment when it holds rows in one of `states` under its
    lease: that state and those rows.

    The signal goes out as soon as a lease enters one of `states` (the worker's or the
    other's); the worker's rows are then told apart by their lease token, which stays put
    while the other worker's claims come and go."""
    for attempt in range(1, tries + 1):
        seen = set(run.ledger.leased().values())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            leases = set(run.ledger.leased().values())
            if any(state in states for state, _ in leases - seen):
                break
            seen |= leases
        run.stack.signal(name, signal.SIGSTOP)
        time.sleep(0.2)
        before = run.ledger.leased()
        time.sleep(0.5)
        held = {pk: lease for pk, lease in run.ledger.leased().items() if before.get(pk) == lease}
        leases = set(held.values())
        if len(leases) == 1:
            ((state, _),) = leases
            if state in states:
                print(f"{name} frozen holding {len(held)} {state} rows at try {attempt}")
                return state, set(held)
        run.stack.signal(name, signal.SIGCONT)
        if run.ledger.status() != "sending":
            break
        # Long enough for the chunk it holds to finish well inside its lease: a worker
        # frozen again and again would lose its lease without being meant to.
        time.sleep(1)
    pytest.fail(f"{name} was never caught holding rows in {states}: {run.ledger.by_state()}")


def test_a_send_survives_a_killed_worker_and_restarts_of_redis_and_postgresql(crash_run):
    run, total = crash_run, 5000
    started = time.monotonic()
    timings = {}
    # Ten recipients are refused with 451 the first time: deferred, retried a second later.
    run.launch(recipients=total, delay=0.01, behaviours=("reader1?@*=451-once",))

    # w1 dies with SIGKILL while it has messages handed over (frozen first, so that what
    # it had in flight can be counted).
    wait_for(lambda: run.ledger.done() >= 500, timeout=60, what="the send to get going")
    _, in_flight_at_kill = _freeze_holding(run, "w1", states={"in_flight"})
    run.stack.kill("w1")
    timings["killed"] = time.monotonic() - started

    wait_for(lambda: run.ledger.done() >= 1500, timeout=60, what="progress after the kill")
    run.redis.restart()  # every queued task and every lease of Redis is gone
    timings["redis"] = time.monotonic() - started

    # PostgreSQL goes down while w2 has messages handed over and not yet recorded: the
    # sink is frozen to hold that moment open (pg_ctl restart -m fast cuts every session).
    wait_for(lambda: run.ledger.done() >= 2500, timeout=60, what="progress after Redis")
    assert run.ledger.status() == "sending"
    run.stack.signal("sink", signal.SIGSTOP)
    wait_for(lambda: run.ledger.count("in_flight"), timeout=10, what="w2 to have mail in flight")
    run.cluster.restart()
    run.stack.signal("sink", signal.SIGCONT)
    timings["postgres"] = time.monotonic() - started

    _sent_within(run, FINISH_SECONDS - (time.monotonic() - started))
    timings["sent"] = time.monotonic() - started
    states = run.ledger.by_state()
    print({k: round(v, 1) for k, v in timings.items()}, states, len(in_flight_at_kill))

    assert run.stack.processes["w2"].poll() is None  # nothing was restarted by hand
    unknown = states.get("unknown", 0)
    assert set(states) <= {"sent", "unknown"}, states
    assert states["sent"] + unknown == total
    assert run.ledger.attempt_outcomes() == {"sent": states["sent"], "deferred": 10}
    messages = run.messages()
    assert duplicates(messages) == {}
    assert None not in {m.delivery_id for m in messages}  # every return path reads back
    received = {m.recipient for m in messages}
    assert set(run.ledger.addresses("sent").values()) <= received
    assert len(received) >= total - unknown
    # Only what the killed worker had handed over may be unknown: the restarts lose no
    # outcome of a message the relay took.
    lost = sorted(set(run.ledger.addresses("unknown")) - in_flight_at_kill)
    arrived = len(set(lost) & {m.delivery_id for m in messages})
    assert not lost, (
        f"{len(lost)} deliveries unknown though not in flight at the kill ({arrived} of them "
        f"accepted by the sink): {lost}"
    )
    assert unknown <= len(in_flight_at_kill)


def test_a_frozen_worker_resumed_after_its_lease_sends_nothing_twice(crash_run):
    run, total = crash_run, 3000
    run.launch(recipients=total, delay=0.02)
    wait_for(lambda: run.ledger.done() >= 200, timeout=60, what="the send to get going")

    # w1 is frozen twice, once in each state it can hold rows in, each time past its lease.
    frozen: dict[str, set[int]] = {}
    while len(frozen) < 2:
        state, rows = _freeze_holding(run, "w1", states={"claimed", "in_flight"} - set(frozen))
        if state == "claimed":
            # Between its claim and DATA: the sweep gives the rows back and w2 sends them.
            wait_for(
                lambda rows=rows: set(run.ledger.addresses("sent")) >= rows,
                timeout=30,
                what="w2 to send the frozen worker's claimed rows",
            )
        else:
            # With messages handed over: the rows become unknown, never queued again.
            wait_for(
                lambda rows=rows: set(run.ledger.addresses("unknown")) >= rows,
                timeout=30,
                what="the sweep to give up on the frozen worker's rows in flight",
            )
        frozen[state] = rows
        run.stack.signal("w1", signal.SIGCONT)  # resumed, it goes on where it stopped
        time.sleep(1)
    assert run.stack.processes["w1"].poll() is None
    claimed, in_flight = sorted(frozen["claimed"]), sorted(frozen["in_flight"])

    _sent_within(run, 90)
    messages = run.messages()
    assert duplicates(messages) == {}
    received = Counter(m.delivery_id for m in messages)
    # Resumed, w1 found its claim gone (the rows went out once, through w2), and finished
    # handing over what it had in flight (once: those rows were never queued again).
    assert {received[pk] for pk in claimed + in_flight} == {1}
    states = run.ledger.by_state()
    assert set(states) <= {"sent", "unknown"}
    assert set(run.ledger.addresses("unknown")) == set(in_flight)
    assert len({m.recipient for m in messages}) == total
    # Its compare-and-set wrote nothing: one attempt for each row w2 took over, none for
    # those left unknown.
    assert run.ledger.attempts(claimed) == dict.fromkeys(claimed, 1)
    assert run.ledger.attempts(in_flight) == {}


def test_five_pauses_with_every_process_restarted_send_each_recipient_once(crash_run):
    run, total = crash_run, 2500
    campaign_id = run.launch(recipients=total, delay=0.02)
    processes = ("w1", "w2", "beat")

    for cycle in range(5):
        reached = run.ledger.done() + 150
        wait_for(
            lambda reached=reached: run.ledger.done() >= reached,
            timeout=60,
            what=f"progress before pause {cycle + 1}",
        )
        run.stack.control("pause", str(campaign_id))
        run.stack.stop(*processes)  # warm shutdown: running chunks finish
        assert run.ledger.leased() == {}, f"rows left under a lease after stop {cycle + 1}"
        assert run.ledger.done() < total, "the send ended before five pauses"
        run.stack.beat()
        run.stack.worker("w1")
        run.stack.worker("w2")
        run.stack.control("resume", str(campaign_id))

    _sent_within(run, 120)
    messages = run.messages()
    assert duplicates(messages) == {}
    assert len(messages) == total
    assert run.ledger.by_state() == {"sent": total}
