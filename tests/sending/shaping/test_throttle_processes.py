"""The throttles across real OS processes sharing one Redis: a rate limit holds across all of
them in every sliding window, and a slot held by a process killed with SIGKILL comes back
when its lease lapses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from sending import throttle
from tests.conftest import redis_test_url

REPO = Path(__file__).resolve().parents[3]

# A worker: set up Django, say "ready", wait for the start time on stdin, then take grants
# one at a time for `duration` seconds (each "send" takes 5 ms), sleeping while throttled;
# print the wall-clock time of every grant.
RATE_WORKER = """
import json, sys, time
import django
django.setup()
from sending import throttle
key, limit, window, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print("ready", flush=True)
start_at = float(sys.stdin.readline())
time.sleep(max(0.0, start_at - time.time()))
end, stamps = start_at + duration, []
while time.time() < end:
    if throttle.rate_take(key=key, limit=limit, wanted=1, window_seconds=window):
        stamps.append(time.time())
        time.sleep(0.005)
    else:
        wait = throttle.rate_wait_seconds(key=key, limit=limit, window_seconds=window)
        time.sleep(min(max(wait, 0.001), max(0.0, end - time.time())))
print(json.dumps(stamps), flush=True)
"""

SLOT_HOLDER = """
import sys, time
import django
django.setup()
from sending import throttle
assert throttle.slot_acquire(key=sys.argv[1], limit=1, holder="doomed", ttl=float(sys.argv[2]))
print("held", flush=True)
time.sleep(60)
"""


def _start(script: str, *args: object) -> subprocess.Popen:
    env = {
        **os.environ,
        "REDIS_URL": redis_test_url(),
        "DJANGO_SETTINGS_MODULE": "espsite.settings",
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.serial
def test_rate_limit_holds_across_processes_in_every_sliding_window():
    limit, window, duration = 20, 2.0, 6.0
    workers = [_start(RATE_WORKER, "provider:google", limit, window, duration) for _ in range(3)]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"
        start_at = time.time() + 0.2
        for worker in workers:
            worker.stdin.write(f"{start_at}\n")
            worker.stdin.flush()
        per_worker = [json.loads(worker.stdout.readline()) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=5)

    stamps = sorted(stamp for grants in per_worker for stamp in grants)
    busiest = max(sum(start <= s < start + window for s in stamps) for start in stamps)
    # every window starting at a grant is the worst case: one that starts between two
    # grants holds no more than the one starting at the next grant
    assert busiest <= limit
    assert busiest == limit  # the limit is used, not just respected
    # about `limit` per window (the margin costs 5%): grants at 0, 2.1 and 4.2 s
    assert len(stamps) >= 0.9 * limit * duration / window
    assert sum(1 for grants in per_worker if grants) >= 2


@pytest.mark.serial
def test_a_slot_held_by_a_killed_process_frees_when_its_lease_lapses():
    key, ttl = "mx:google", 1.5
    holder = _start(SLOT_HOLDER, key, ttl)
    try:
        assert holder.stdout.readline().strip() == "held"
        held_at = time.monotonic()
        assert not throttle.slot_acquire(key=key, limit=1, holder="next", ttl=ttl)
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=5)
        assert not throttle.slot_acquire(key=key, limit=1, holder="next", ttl=ttl)
        while not throttle.slot_acquire(key=key, limit=1, holder="next", ttl=ttl):
            assert time.monotonic() - held_at < ttl + 1, "the dead holder's lease never lapsed"
            time.sleep(0.05)
        assert time.monotonic() - held_at >= ttl - 0.2
        assert redis.Redis.from_url(redis_test_url()).zrange(f"shaping:slots:{key}", 0, -1) == [
            b"next"
        ]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=5)
