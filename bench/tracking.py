"""Tracking endpoint throughput: open pixels and click redirects served by gunicorn with
the production config, driven by wrk, against a static 43-byte GIF from the same set-up.

    make bench-tools                                  # once: wrk (and smtp-sink)
    .venv/bin/python bench/tracking.py [--duration 20] [--connections 64] [--rounds 1]
        [--deliveries 50000] [--urls 100000] [--workers N] [--threads N] [--keep]

Creates a database of its own (esp_bench_tracking, dropped and recreated, dropped again at
the end unless --keep) and uses Redis database 10 (flushed). Seeds one workspace with a
verified sending domain and a sent campaign with N `sent` deliveries (set-based SQL), and
writes --urls request paths: 70% open pixels, 30% clicks on one of five links, each for a
random delivery (a delivery is often hit more than once: every hit is its own event).

Each run starts a fresh gunicorn with `-c espsite/gunicorn.conf.py` on a free loopback
port (GUNICORN_WORKERS / GUNICORN_THREADS, or --workers / --threads, as in production):

    static     bench/static_app.py: the same GIF and headers from a bare WSGI app
    tracking   espsite.wsgi: /o/<token>.gif and /c/<token> on the tracking host
               links.<domain>, each answered once its hit is in the spool
               (tracking/spool.py, a directory of the run's), whose flusher thread
               per process inserts it into the buffer (PendingHit) within 50 ms

then a short warm-up (forged tokens: answered, nothing stored), then wrk for --duration
seconds with the same Lua script, then SIGTERM (as in a deploy: requests in progress
finish, the flushers buffer what is left). After the runs, the production drain
(tracking.ingest.pending_hits_drain_all, the task that runs every 2 s) stores the
buffered hits as events and counters; its rate is reported (in production it runs on the
tracking workers while the endpoints answer). The script gives each wrk thread one
connection (-t = -c) and its share of the paths, round-robin; every request carries its
id in a browser User-Agent, and the id and status of every answer go to the thread's
answer file. With one connection per thread the answers follow the requests one by one,
so each answer is matched to the event stored for it. --rounds N runs each N times,
alternating which goes first, and reports medians: on a machine shared with other work
single runs vary.

    requests_per_s           answers / duration, tracking
    baseline_requests_per_s  the same, static
    ratio                    requests_per_s / baseline_requests_per_s (target >= 0.5)
    p99_ms                   wrk's 99th percentile latency, tracking
    lost                     answered 200/302 but no event stored for it (must be 0)

Details: requests (sent, answered, ok, errors by kind; unanswered: in flight when wrk
stopped), events (stored; stored_unanswered: in-flight requests stored anyway;
stored_twice: must be 0; counted: opens + clicks in the per-delivery counters, must
equal events), drain (hits, events, seconds, events_per_s), spool failures found in
gunicorn's log, batches (the bench database's commits during the runs: one per flush)
and events_per_batch, CPU seconds by process kind and per request (web: gunicorn;
postgres: the bench database's backends; wrk; others: everything else on the machine
meanwhile), the same for the baseline, each round's figures, workers, threads, duration.
Prints one JSON line.
"""

import argparse
import contextlib
import json
import os
import random
import resource
import runpy
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402 (after the path is set)
    Children,
    bench_data_drop,
    database_recreate,
    environment_base,
    free_port,
    redis_flush,
    targets_check,
)

DOMAIN = "news.bench-shop.example"
TRACKING_HOST = f"links.{DOMAIN}"
CONFIG = ROOT / "espsite" / "gunicorn.conf.py"
OPEN_SHARE = 0.7
LINKS = [
    "https://shop.bench-shop.example/spring?utm_source=newsletter&utm_campaign=spring",
    "https://shop.bench-shop.example/collections/linen",
    "https://shop.bench-shop.example/collections/sale?sort=price",
    "https://blog.bench-shop.example/2026/04/what-to-wear",
    "https://shop.bench-shop.example/account/preferences",
]
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
ID_MARK = " r/"  # the User-Agent ends with " r/<run>.<thread>.<request>"
WARM_UP_SECONDS = 3
# wrk counts slower answers as timeouts and leaves them out of the latency figures: far
# above any answer's time, so that every latency is counted.
WRK_TIMEOUT = "15s"

# One Lua state per wrk thread; one connection per thread (-t = -c).
LUA = r"""
local threads = {}
local count = 0

function setup(thread)
  thread:set("index", count)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  local urls, out = args[1], args[2]
  host, agent, label = args[3], args[4], args[5]
  paths = {}
  for line in io.lines(urls .. "/urls-" .. index .. ".txt") do
    paths[#paths + 1] = line
  end
  answers = io.open(out .. "/answers-" .. index .. ".txt", "w")
  answers:setvbuf("full")
  position = index % #paths
  sent, ok, failed, current = 0, 0, 0, 0
end

function request()
  position = position % #paths + 1
  sent = sent + 1
  current = sent
  return wrk.format("GET", paths[position], {
    ["Host"] = host,
    ["User-Agent"] = agent .. " r/" .. label .. "." .. index .. "." .. sent,
    ["Accept"] = "image/avif,image/webp,image/png,image/*;q=0.8,*/*;q=0.5",
  })
end

function response(status, headers, body)
  answers:write(current, " ", status, "\n")
  if status >= 200 and status < 400 then ok = ok + 1 else failed = failed + 1 end
end

function done(summary, latency, requests)
  local sent_all, ok_all, failed_all = 0, 0, 0
  for _, thread in ipairs(threads) do
    sent_all = sent_all + thread:get("sent")
    ok_all = ok_all + thread:get("ok")
    failed_all = failed_all + thread:get("failed")
  end
  local e = summary.errors
  io.write(string.format(
    '\nBENCH-JSON {"answered": %d, "duration_us": %d, "sent": %d, "ok": %d, "failed": %d, '
    .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, sent_all, ok_all, failed_all,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _log(message: str) -> None:
    print(f"[bench/tracking] {message}", file=sys.stderr, flush=True)


def _environment(options: argparse.Namespace) -> None:
    """Settings for this process and both gunicorns (they inherit os.environ)."""
    env = environment_base(
        name="tracking", database_url=options.database_url, redis_url=options.redis_url
    )
    if options.workers:
        env["GUNICORN_WORKERS"] = str(options.workers)
    if options.threads:
        env["GUNICORN_THREADS"] = str(options.threads)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- the data ----------------------------------------------------------------------------


def _seed(count: int) -> list[int]:
    """Workspace, verified domain, a sent campaign with `count` sent deliveries (a day ago,
    so that no open or click is judged a machine's for coming at delivery): their ids."""
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import Workspace
    from campaigns.models import Campaign
    from sending.models import SendingDomain
    from sending.models.shaping import PROVIDERS

    now = timezone.now()
    workspace = Workspace.objects.create(
        name="Tracking bench",
        slug="tracking-bench",
        postal_address="1 Harbour Street, Bristol",
        status=Workspace.Status.ACTIVE,
        status_changed_at=now,
    )
    SendingDomain.objects.create(
        workspace=workspace,
        domain=DOMAIN,
        return_path_subdomain="bounces",
        tracking_subdomain="links",
        status=SendingDomain.Status.VERIFIED,
        first_verified_at=now,
        last_checked_at=now,
        is_warmed_up=True,
    )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring newsletter",
        subject="The spring news",
        from_name="Bench Shop",
        from_email=f"hello@{DOMAIN}",
        status=Campaign.Status.SENT,
    )
    providers = [name for name, _ in PROVIDERS]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO contacts_contact (workspace_id, email, first_name, last_name, "
            "attributes, status, created_at, updated_at) "
            "SELECT %s, 'reader' || n || '@mail' || (n %% 50) || '.example', '', '', '{}', "
            "'active', now(), now() FROM generate_series(0, %s - 1) AS n",
            [workspace.pk, count],
        )
        cursor.execute(
            "INSERT INTO sending_delivery (workspace_id, campaign_id, contact_id, address, "
            "state, skip_reason, attempt_count, bounce_class, last_response, message_id, "
            "provider, created_at, sent_at, updated_at) "
            "SELECT c.workspace_id, %s, c.id, c.email, 'sent', '', 1, '', '250 2.0.0 Ok', "
            "'<bench.' || c.id || '@' || %s || '>', (%s::varchar[])[1 + c.id %% %s], "
            "now() - interval '1 day', now() - interval '1 day', now() "
            "FROM contacts_contact c WHERE c.workspace_id = %s ORDER BY c.id",
            [campaign.pk, DOMAIN, providers, len(providers), workspace.pk],
        )
        cursor.execute(
            "SELECT id FROM sending_delivery WHERE campaign_id = %s ORDER BY id", [campaign.pk]
        )
        ids = [delivery_id for (delivery_id,) in cursor.fetchall()]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_contact, sending_delivery")
    return ids


def _paths_write(delivery_ids: list[int], count: int, shares: int, directory: Path) -> dict:
    """`count` request paths for random deliveries, dealt round-robin into one file per
    wrk thread; how many of each kind."""
    from sending import links

    rng = random.Random(10)
    files = [(directory / f"urls-{n}.txt").open("w") for n in range(shares)]
    kinds = {"open": 0, "click": 0}
    try:
        for n in range(count):
            delivery_id = rng.choice(delivery_ids)
            if rng.random() < OPEN_SHARE:
                path = links.OPEN_PATH.format(token=links.open_token(delivery_id=delivery_id))
                kinds["open"] += 1
            else:
                token = links.click_token(delivery_id=delivery_id, url=rng.choice(LINKS))
                path = links.CLICK_PATH.format(token=token)
                kinds["click"] += 1
            files[n % shares].write(path + "\n")
    finally:
        for handle in files:
            handle.close()
    return kinds


# --- the servers and the load ----------------------------------------------------------------


def _config_values() -> dict:
    """Workers and threads as the config file computes them from this environment."""
    values = runpy.run_path(str(CONFIG))
    return {"workers": values["workers"], "threads": values["threads"]}


def _get(port: int, path: str, *, host: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": host, "User-Agent": USER_AGENT}
    )
    try:
        # An http URL on loopback, made here.
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _server_start(children: Children, name: str, app: str, log: Path) -> tuple[int, int]:
    """gunicorn with the production config on a free loopback port, once it answers:
    (port, master pid)."""
    port = free_port()
    bind = os.environ.get("GUNICORN_BIND")
    os.environ["GUNICORN_BIND"] = f"127.0.0.1:{port}"
    try:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        process = children.start(name, [gunicorn, "-c", str(CONFIG), app], log=log)
    finally:
        if bind is None:
            del os.environ["GUNICORN_BIND"]
        else:
            os.environ["GUNICORN_BIND"] = bind
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if children.dead():
            raise RuntimeError(f"{name} exited while starting:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            status, _, _ = _get(port, "/o/warm.up.gif", host=TRACKING_HOST)
            if status == 200:
                return port, process.pid
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on port {port} within 60 s")


def _ticks(pid: int | str) -> tuple[int, int]:
    """(own CPU ticks, reaped children's CPU ticks) of a process; 0s when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0, 0
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def _cpu_sample(master_pid: int) -> dict:
    """CPU ticks so far: gunicorn (the master with the workers it reaped, and each live
    worker), each live PostgreSQL backend of the bench database (not the server's own
    processes, nor other databases' backends), and the machine's busy time."""
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    own, reaped = _ticks(master_pid)
    web = {"master": own + reaped}
    postgres = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            stat = (entry / "stat").read_text()
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent == master_pid:
                web[entry.name] = _ticks(entry.name)[0]
            elif name == "postgres" and f" {database} " in (entry / "cmdline").read_text():
                postgres[entry.name] = _ticks(entry.name)[0]
    # user nice system idle iowait irq softirq steal: all but idle and iowait is busy.
    times = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    return {"web": web, "postgres": postgres, "machine": sum(times) - times[3] - times[4]}


class _CpuWatch:
    """CPU seconds by process kind over a run: sampled every half second, so that a
    backend that ends meanwhile (its gunicorn worker replaced after max_requests) still
    counts up to its last sample; reaped gunicorn workers are in their master's figures."""

    def __init__(self, master_pid: int) -> None:
        self.master_pid = master_pid
        self.first = _cpu_sample(master_pid)
        self.last = {"web": {}, "postgres": {}, "machine": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _take(self) -> None:
        sample = _cpu_sample(self.master_pid)
        # A worker that ended is in its master's figures once reaped: the latest sample.
        self.last["web"] = sample["web"]
        self.last["postgres"].update(sample["postgres"])
        self.last["machine"] = sample["machine"]

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            self._take()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._take()
        hertz = os.sysconf("SC_CLK_TCK")

        def spent(kind: str) -> float:
            first = self.first[kind]
            return sum(ticks - first.get(pid, 0) for pid, ticks in self.last[kind].items()) / hertz

        return {
            "web": spent("web"),
            "postgres": spent("postgres"),
            "machine": (self.last["machine"] - self.first["machine"]) / hertz,
        }


def _wrk(port: int, script: Path, work: Path, label: str, options) -> dict:
    """One wrk run of the Lua script: its BENCH-JSON figures and its own CPU seconds."""
    out = work / f"out-{label}"
    out.mkdir()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [
        "wrk", f"-t{options.connections}", f"-c{options.connections}",
        f"-d{options.duration:g}s", "--latency", f"--timeout={WRK_TIMEOUT}", "-s", str(script),
        f"http://127.0.0.1:{port}", "--",
        str(work / "urls"), str(out), TRACKING_HOST, USER_AGENT, label,
    ]  # fmt: skip
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=options.duration + 120
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(
        (line for line in completed.stdout.splitlines() if line.startswith("BENCH-JSON ")), None
    )
    if completed.returncode != 0 or line is None:
        output = f"{completed.stdout}\n{completed.stderr}"
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{output}")
    figures = json.loads(line.removeprefix("BENCH-JSON "))
    figures["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures["answers"] = _answers_read(out, label, options.connections)
    return figures


def _warm_up(port: int) -> None:
    """Every worker past its first requests: forged tokens, answered without a write."""
    subprocess.run(
        ["wrk", "-t2", "-c16", f"-d{WARM_UP_SECONDS}s", "-H", f"Host: {TRACKING_HOST}",
         f"http://127.0.0.1:{port}/o/warm.up.gif"],
        capture_output=True, check=True, timeout=WARM_UP_SECONDS + 60,
    )  # fmt: skip


def _answers_read(out: Path, label: str, connections: int) -> dict[str, int]:
    """Request id ("<label>.<thread>.<n>") -> status of every answer wrk got."""
    answers = {}
    for thread in range(connections):
        with (out / f"answers-{thread}.txt").open() as handle:
            for line in handle:
                request, status = line.split()
                answers[f"{label}.{thread}.{request}"] = int(status)
    return answers


def _database_stats() -> dict[str, int]:
    """Transactions committed in the bench database: each flush is one (an INSERT in
    autocommit). The stats of a backend are flushed at the latest when it ends."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        (commits,) = cursor.fetchone()
    connection.close()  # idle during the run: one backend fewer
    return {"commits": commits}


def _run_one(name: str, app: str, label: str, options, script: Path, work: Path) -> dict:
    """gunicorn up, warm-up, the measured wrk run, gunicorn down (SIGTERM, as in a deploy:
    requests in progress finish, the flushers buffer what is left); the figures."""
    children = Children(log=_log)
    logs = work / "logs"
    try:
        port, master_pid = _server_start(children, name, app, logs / f"{label}.log")
        pixel = _get(port, "/o/forged.token.gif", host=TRACKING_HOST)
        _warm_up(port)
        stats_before = _database_stats()
        watch = _CpuWatch(master_pid)
        figures = _wrk(port, script, work, label, options)
        cpu = watch.stop()
        process = children.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _log(f"{name} did not stop within 60 s")
    finally:
        children.stop(grace=5)
    time.sleep(1)  # the backends of the workers write their stats as they exit
    stats_after = _database_stats()
    figures["database"] = {key: stats_after[key] - stats_before[key] for key in stats_after}
    figures["cpu"] = cpu
    figures["cpu"]["wrk"] = figures.pop("wrk_cpu_s")
    figures["pixel"] = pixel
    figures["log"] = (logs / f"{label}.log").read_text(errors="replace")
    figures["per_s"] = figures["answered"] / (figures["duration_us"] / 1e6)
    _log(f"{label} ({name}): {figures['per_s']:.0f} answers/s, p99 "
         f"{figures['p99_us'] / 1000:.1f} ms")  # fmt: skip
    return figures


def _drain() -> dict:
    """The buffered hits stored as events and counters by the production drain, as its
    task does (tracking.tasks.pending_hits_drain_task), until none is left: its time."""
    from django.db import connection

    from tracking.ingest import pending_hits_drain_all

    started = time.perf_counter()
    taken, stored = pending_hits_drain_all()
    seconds = time.perf_counter() - started
    connection.close()
    return {"hits": taken, "events": stored, "seconds": round(seconds, 2),
            "events_per_s": round(stored / seconds, 1) if seconds else None}  # fmt: skip


def _stored() -> dict:
    """The events stored: request ids parsed from their User-Agent, and the counters'
    total."""
    from django.db import connection

    ids: list[str] = []
    kinds: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, machine_rule, user_agent FROM tracking_event")
        for kind, rule, agent in cursor.fetchall():
            key = f"{kind}:{rule}" if rule else kind
            kinds[key] = kinds.get(key, 0) + 1
            ids.append(agent[agent.rfind(ID_MARK) + len(ID_MARK) :])
        cursor.execute("SELECT COALESCE(SUM(opens + clicks), 0) FROM tracking_deliveryactivity")
        (counted,) = cursor.fetchone()
    return {"ids": ids, "kinds": kinds, "counted": int(counted)}


def _pixels_compare(tracked: tuple, static: tuple) -> None:
    """The baseline answered what the pixel answers (a forged token's GIF): the same status,
    bytes and headers."""
    ignored = {"date", "server", "connection"}

    def shown(answer: tuple) -> tuple:
        status, headers, body = answer
        kept = {name.lower(): value for name, value in headers.items()}
        return status, {name: kept[name] for name in sorted(kept) if name not in ignored}, body

    if shown(tracked) != shown(static):
        raise RuntimeError(
            f"the baseline differs from the pixel: {shown(static)} vs {shown(tracked)}"
        )


# --- the run -----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _run(options: argparse.Namespace, work: Path, made: set) -> dict:
    _environment(options)
    _log(f"recreating {options.database_url.rsplit('/', 1)[1]}, flushing {options.redis_url}")
    made.add("database")
    database_recreate(options.database_url)
    redis_flush(options.redis_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _log(f"seeding {options.deliveries} sent deliveries")
    delivery_ids = _seed(options.deliveries)
    (work / "urls").mkdir()
    (work / "logs").mkdir()
    # The gunicorns' spool (tracking/spool.py): a directory of this run's.
    os.environ["TRACKING_SPOOL_DIR"] = str(work / "spool")
    paths = _paths_write(delivery_ids, options.urls, options.connections, work / "urls")
    script = work / "tracking.lua"
    script.write_text(LUA)
    config = _config_values()
    _log(
        f"{config['workers']} workers x {config['threads']} threads; wrk "
        f"-t{options.connections} -c{options.connections} -d{options.duration:g}s, "
        f"{options.rounds} round(s)"
    )

    # Rounds alternate which goes first (static tracking, tracking static, ...): on a
    # machine shared with other work, single runs vary.
    static_runs, tracking_runs = [], []
    for round_number in range(1, options.rounds + 1):
        order = ["static", "tracking"] if round_number % 2 else ["tracking", "static"]
        for name in order:
            if name == "static":
                app, runs = "bench.static_app:application", static_runs
            else:
                app, runs = "espsite.wsgi", tracking_runs
            runs.append(_run_one(name, app, f"{name[0]}{round_number}", options, script, work))
    _pixels_compare(tracking_runs[0]["pixel"], static_runs[0]["pixel"])

    drain = _drain()
    stored = _stored()
    answers = {key: status for run in tracking_runs for key, status in run["answers"].items()}
    ok = {key for key, status in answers.items() if 200 <= status < 400}
    stored_ids = set(stored["ids"])
    events = len(stored["ids"])
    batches = sum(run["database"]["commits"] for run in tracking_runs)
    answered = sum(run["answered"] for run in tracking_runs)
    sent = sum(run["sent"] for run in tracking_runs)
    errors = {
        kind: sum(run[kind] for run in tracking_runs)
        for kind in ("connect", "read", "write", "status", "timeout")
    }
    failures_logged = sum(
        run["log"].count(marker)
        for run in tracking_runs
        for marker in (
            "not spooled",
            "not flushed",
            "unusable",
            "Unreadable line",
            "refused by the database",
        )
    )
    requests_per_s = _median([run["per_s"] for run in tracking_runs])
    baseline_per_s = _median([run["per_s"] for run in static_runs])

    def cpu(runs: list[dict]) -> dict:
        spent = {kind: sum(run["cpu"][kind] for run in runs) for kind in runs[0]["cpu"]}
        # Process times and the machine's tick counts differ by a few percent: never below 0.
        others = spent["machine"] - spent["web"] - spent["postgres"] - spent["wrk"]
        spent["others"] = max(0.0, others)
        count = sum(run["answered"] for run in runs)
        return {
            "cpu_s": {kind: round(value, 2) for kind, value in spent.items()},
            "cpu_ms_per_request": {
                kind: round(value * 1000 / max(count, 1), 3) for kind, value in spent.items()
            },
        }

    return {
        "requests_per_s": round(requests_per_s, 1),
        "baseline_requests_per_s": round(baseline_per_s, 1),
        "ratio": round(requests_per_s / baseline_per_s, 3),
        "p99_ms": round(_median([run["p99_us"] for run in tracking_runs]) / 1000, 2),
        "lost": len(ok - stored_ids),
        "requests": {
            "sent": sent,
            "answered": answered,
            "ok": len(ok),
            "unanswered": sent - answered,
            "errors": errors,
        },
        "events": events,
        "drain": drain,
        "events_by_kind": stored["kinds"],
        "stored_unanswered": len(stored_ids - set(answers)),
        "stored_twice": events - len(stored_ids),
        "counted": stored["counted"],
        "spool_failures_logged": failures_logged,
        "batches": batches,
        "events_per_batch": round(events / max(batches, 1), 1),
        "latency_ms": {
            quantile: round(_median([run[f"{quantile}_us"] for run in tracking_runs]) / 1000, 2)
            for quantile in ("p50", "p90", "p99", "max")
        },
        "baseline_latency_ms": {
            quantile: round(_median([run[f"{quantile}_us"] for run in static_runs]) / 1000, 2)
            for quantile in ("p50", "p90", "p99", "max")
        },
        **cpu(tracking_runs),
        "baseline": cpu(static_runs),
        "rounds": [
            {
                "requests_per_s": round(tracking["per_s"], 1),
                "baseline_requests_per_s": round(static["per_s"], 1),
                "p99_ms": round(tracking["p99_us"] / 1000, 2),
            }
            for tracking, static in zip(tracking_runs, static_runs, strict=True)
        ],
        "paths": paths,
        "deliveries": options.deliveries,
        "workers": config["workers"],
        "threads": config["threads"],
        "connections": options.connections,
        "cores": len(os.sched_getaffinity(0)),
        "duration": options.duration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per wrk run")
    parser.add_argument(
        "--connections", type=int, default=64, help="wrk connections (one thread each)"
    )
    parser.add_argument("--deliveries", type=int, default=50_000)
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each, alternating; medians reported"
    )
    parser.add_argument("--urls", type=int, default=100_000, help="distinct request paths")
    parser.add_argument("--workers", type=int, help="GUNICORN_WORKERS (default: the config's)")
    parser.add_argument("--threads", type=int, help="GUNICORN_THREADS (default: the config's)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp_bench_tracking"
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--keep", action="store_true", help="keep the database and the files")
    options = parser.parse_args()
    targets_check(options)
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: `make bench-tools` installs it.")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    made: set[str] = set()
    failed = True
    try:
        result = _run(options, work, made)
        failed = False
    finally:
        bench_data_drop(options, made)
        if failed or options.keep:
            _log(f"files and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
