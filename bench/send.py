"""End-to-end send throughput: a real campaign from "Send" to the last 250 at Postfix's
smtp-sink, against pre-built messages pushed by plain smtplib to the same sink, in one run.

    make bench-tools                                   # once: smtp-sink, no Postfix daemon
    .venv/bin/python bench/send.py [--recipients 100000 | --quick] [--shaping both|off|on]

Creates a database of its own (esp_bench_send, dropped and recreated, dropped again at the
end unless --keep) and uses Redis database 14 (flushed) as broker, result backend and
cache. Seeds one workspace with a verified sending domain and an RSA-2048 DKIM key, N
contacts subscribed to a list (COPY), and a campaign from the newsletter starter with ten
merge tags and twenty personalised links. Starts smtp-sink on a free loopback port and the
worker set-up of `make run` (runstack: a bulk worker on default,send,tracking with
concurrency 2, a transactional worker with concurrency 1) as subprocesses, waits until
they answer, then clicks Send (campaign_schedule with no time, and the due-campaign task
enqueued at once instead of waiting up to 10 s for beat) and times it until the last
delivery is `sent` (its sent_at). Workers' RSS (VmRSS of each worker and its pool
children, summed) and the CPU seconds of workers, PostgreSQL backends, Redis and the sink
are sampled from /proc meanwhile.

Baseline: the same number of messages, pre-built once with the campaign's own builder
(200 distinct ones, sent round-robin: same size, already signed), pushed by 4 processes,
each over one reused smtplib connection, to the same sink.

Traffic shaping (--shaping, default both): the campaign is sent twice, each time as its
own campaign to the same contacts, first unshaped (no sending IP in service: claims take
any provider, as in the Delivery issue's figures), then shaped with limits set high (the
default pool gets an active sending IP on loopback, every ProviderLimit allows 10,000,000
messages a minute over 1,000 connections, the domain is warmed up): every chunk then
takes a lane, its Redis rate and connection slots, and claims one provider's rows, but
never waits. --shaping off|on measures one of them; --shaped-first swaps the order.
--rounds N sends each variant N times, alternating which goes first (A B, B A, ...), and
reports the medians: on a machine shared with other work, single sends vary by 20-30%.

Prints one JSON line: messages_per_s (unshaped), shaped_messages_per_s, shaped_ratio
(shaped over unshaped; the issue allows 0.9 at worst), shaped_cpu_ratio (the same for the
stack's CPU per message, less disturbed by other load on the machine), every figure of the
shaped send again under a shaped_ prefix, baseline_messages_per_s, ratio (the first send
over the baseline), peak_rss_mb (peak_pss_mb: shared pages counted once), the settings in
force, and what the send cost: cpu_s by process kind ("others": everything else on the machine
meanwhile, which the rate shares the cores with), stack_cpu_ms_per_message and
cpu_bound_messages_per_s (the rate those CPU seconds allow on idle cores). Worker settings
come from the environment as usual: SENDING_CHUNK_SIZE, SENDING_FANOUT,
SENDING_TASK_SECONDS, SENDING_SMTP_CONNECTIONS; --concurrency sets the bulk worker's.

Where the time goes: BENCH_SEND_PROFILE=phases starts the bulk worker through this file,
whose pool children time each step of chunk_send (claim, build and sign, in-flight mark,
transport, record, ...) and the gaps between Celery tasks, and adds them to the JSON line
("profile": wall and main-thread CPU seconds per phase, ms per message, share of the
children's time); the overhead is a few timer calls per step. The phases add up every
send of the run: profile one variant with --shaping off or --shaping on.
BENCH_SEND_PROFILE=cprofile adds cProfile of the children's main thread and of the
transport's loop thread (listings in the kept work directory, cprofile.txt); it slows
Python-heavy steps, so compare its shares, not its rate.
"""

import argparse
import contextlib
import json
import marshal
import multiprocessing
import os
import shutil
import signal
import smtplib
import socket
import sys
import tempfile
import threading
import time
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

PROFILE_ENV = "BENCH_SEND_PROFILE"
SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
DOMAIN = "news.bench-shop.example"
BASELINE_DISTINCT = 200
STALL_SECONDS = 120
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

FIRST = ["Ada", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Gustav", "Hana", "Ivo", "Jun"]
LAST = ["Lovelace", "Byte", "Müller", "Ivanov", "Smith", "Khan", "Berg", "Sato", "Novak", "Li"]
CITIES = ["Berlin", "Lisbon", "Osaka", "Lagos", "Lima", "Oslo", "Pune", "Quito"]
FILLER = (
    "Our spring collection brings lighter fabrics, brighter colours and a few classics "
    "that came back by popular demand. Free returns for 60 days, as always. "
)


def _log(message: str) -> None:
    print(f"[bench/send] {message}", file=sys.stderr, flush=True)


# --- the machine: sink, database, Redis -------------------------------------------------


def _smtp_sink_binary() -> str:
    found = shutil.which("smtp-sink") or next(
        (path for path in SINK_PATHS if os.access(path, os.X_OK)), None
    )
    if found is None:
        sys.exit(
            "Postfix's smtp-sink is not installed: run `make bench-tools` (installs Postfix "
            "without starting it), then run this bench again."
        )
    return found


def _environment(options: argparse.Namespace, sink_port: int) -> None:
    """Settings for this process and every worker it starts (they inherit os.environ)."""
    env = environment_base(
        name="send", database_url=options.database_url, redis_url=options.redis_url
    )
    env["SENDING_TRANSPORT"] = "smtp"
    env["SENDING_SMTP_HOST"] = "127.0.0.1"
    env["SENDING_SMTP_PORT"] = str(sink_port)
    env["SENDING_SMTP_SECURITY"] = "none"
    env["SENDING_SMTP_USERNAME"] = ""
    env["SENDING_SMTP_PASSWORD"] = ""


# --- processes and /proc ------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, name, CPU seconds) of every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])))
    return {pid: (ppid, name, ticks / CLOCK_TICKS) for pid, (ppid, name, ticks) in table.items()}


def _descendants(roots: list[int], table: dict) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], list(roots)
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
            stack.extend(children.get(pid, []))
    return found


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, Pss) of a process: RSS counts pages shared with the forking parent in
    every child; PSS splits them between the sharers."""
    rss = pss = 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) / 1024
    return rss, pss


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _threads_cpu(pid: int) -> tuple[float, float]:
    """(main thread, other threads) CPU seconds of a process."""
    main = other = 0.0
    with contextlib.suppress(OSError):
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                raw = Path(task.path, "stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2 :].split()
            seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            if int(task.name) == pid:
                main += seconds
            else:
                other += seconds
    return main, other


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class Sampler(threading.Thread):
    """Every 0.25 s: the workers' summed RSS, and the last CPU time seen per process."""

    def __init__(self, *, workers: dict[str, int], sink_pid: int, database: str) -> None:
        super().__init__(daemon=True)
        self.workers, self.sink_pid, self.database = workers, sink_pid, database
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0
        self.peak_process_rss_mb = 0.0
        self.cpu: dict[int, tuple[str, float, float]] = {}  # pid -> (role, first, last)
        # pool child -> (main, other) CPU seconds when first seen and when last seen
        self.threads: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {}
        self.started_busy = _machine_busy()
        self.stopping = threading.Event()
        self._postgres_cmdlines: dict[int, str] = {}

    def _role(self, pid: int, name: str, worker_pids: set[int]) -> str | None:
        if pid in worker_pids:
            return "workers"
        if pid == self.sink_pid:
            return "sink"
        if name == "redis-server":
            return "redis"
        if name == "postgres":
            cmdline = self._postgres_cmdlines.get(pid)
            if cmdline is None:
                cmdline = self._postgres_cmdlines[pid] = _cmdline(pid)
            if f" {self.database} " in cmdline:
                return "postgres"
        return None

    def sample(self, *, baseline: bool = False) -> None:
        table = _proc_table()
        worker_pids: set[int] = set()
        total_rss = total_pss = 0.0
        for root in self.workers.values():
            for pid in _descendants([root], table):
                worker_pids.add(pid)
                rss, pss = _memory_mb(pid)
                total_rss, total_pss = total_rss + rss, total_pss + pss
                self.peak_process_rss_mb = max(self.peak_process_rss_mb, rss)
                if pid != root:
                    now = _threads_cpu(pid)
                    # A child first seen after the start spent all of its CPU inside the window.
                    first = now if baseline else self.threads.get(pid, ((0.0, 0.0), now))[0]
                    self.threads[pid] = (first, now)
        self.peak_rss_mb = max(self.peak_rss_mb, total_rss)
        self.peak_pss_mb = max(self.peak_pss_mb, total_pss)
        for pid, (_, name, seconds) in table.items():
            role = self._role(pid, name, worker_pids)
            if role is None:
                continue
            # A process first seen after the start used all of its CPU time inside the window.
            first = seconds if baseline else self.cpu.get(pid, (role, 0.0, 0.0))[1]
            self.cpu[pid] = (role, first, seconds)

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            self.sample()

    def stop(self) -> dict:
        self.stopping.set()
        self.join()
        self.sample()
        busy, total = _machine_busy()
        by_role: dict[str, float] = {}
        for role, first, last in self.cpu.values():
            by_role[role] = by_role.get(role, 0.0) + last - first
        main = sum(last[0] - first[0] for first, last in self.threads.values())
        other = sum(last[1] - first[1] for first, last in self.threads.values())
        machine_s = (busy - self.started_busy[0]) / CLOCK_TICKS
        # Everything else on the machine meanwhile (other jobs compete for the 2 cores).
        by_role["others"] = machine_s - sum(by_role.values())
        return {
            "cpu_s": {role: round(seconds, 1) for role, seconds in sorted(by_role.items())},
            "pool_children_cpu_s": {"main_thread": round(main, 1), "loop_thread": round(other, 1)},
            "machine_busy_percent": round(
                100 * (busy - self.started_busy[0]) / max(1, total - self.started_busy[1]), 1
            ),
        }


# --- the campaign -----------------------------------------------------------------------------


def _body() -> str:
    """The campaign's body inside the newsletter layout: ten merge tags, twenty links that
    each carry the recipient's id, about 12 KB."""
    parts = [
        '<h1>Hello {{ first_name|default:"there" }} {{ last_name }},</h1>',
        '<p>Plan {{ attributes.plan|default:"free"|upper }} for {{ email }}, near '
        '{{ attributes.city|default:"your city" }}.</p>',
    ]
    for index in range(20):
        parts.append(
            f'<p>{FILLER * 2}<a href="https://shop.example/item/{index}'
            f'?utm_source=news&amp;uid={{{{ attributes.uid }}}}">Item {index}</a></p>'
        )
    parts.append(
        "<p>You have {{ attributes.points }} points, {{ attributes.tier|title }} member. "
        '<a href="{{ preferences_url }}">Your preferences</a></p>'
    )
    return "\n".join(parts)


def _seed(recipients: int, campaigns: int):
    """Workspace, verified domain with an RSA-2048 key, N subscribed contacts, and
    `campaigns` identical campaigns to them (one per variant measured)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.models import User, Workspace
    from contacts.models import ContactList, Field
    from sending import dkim
    from sending.models import DkimKey, SendingDomain

    now = timezone.now()
    user = User.objects.create(email="bench@bench-shop.example")
    workspace = Workspace.objects.create(
        name="Send bench",
        slug="send-bench",
        postal_address="1 Harbour Street, Bristol",
        status=Workspace.Status.ACTIVE,
        status_changed_at=now,
    )
    # Verified without DNS, as the demo domain is (sending/demo.py).
    domain = SendingDomain.objects.create(
        workspace=workspace,
        domain=DOMAIN,
        return_path_subdomain="bounces",
        tracking_subdomain="links",
        status=SendingDomain.Status.VERIFIED,
        first_verified_at=now,
        last_checked_at=now,
        is_warmed_up=True,  # an established domain: no new-domain caps
    )
    pair = dkim.dkim_key_generate(dkim.RSA)
    DkimKey.objects.create(
        workspace=workspace,
        domain=domain,
        selector="bench1",
        algorithm=DkimKey.Algorithm.RSA,
        private_key=pair.private_pem,
        public_key=pair.public_b64,
        status=DkimKey.Status.ACTIVE,
        activated_at=now,
    )
    for key, field_type in (("plan", "text"), ("city", "text"), ("points", "number")):
        Field.objects.create(workspace=workspace, key=key, label=key.title(), type=field_type)
    Field.objects.create(workspace=workspace, key="tier", label="Tier", type="text")
    Field.objects.create(workspace=workspace, key="uid", label="Uid", type="text")
    contact_list = ContactList.objects.create(workspace=workspace, name="Newsletter")

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(
            "COPY contacts_contact (workspace_id, email, first_name, last_name, attributes, "
            "status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(recipients):
                attributes = {
                    "plan": ("pro", "free", "team")[n % 3],
                    "city": CITIES[n % len(CITIES)],
                    "points": n % 1000,
                    "tier": ("gold", "silver")[n % 2],
                    "uid": f"u-{n}",
                }
                copy.write_row(
                    (
                        workspace.pk,
                        f"reader{n}@mail{n % 50}.example",
                        FIRST[n % len(FIRST)],
                        LAST[(n // 10) % len(LAST)],
                        json.dumps(attributes),
                        "active",
                        now,
                        now,
                    )
                )
        cursor.execute(
            "INSERT INTO contacts_subscription (workspace_id, contact_id, contact_list_id, "
            "status, created_at, subscribed_at) "
            "SELECT workspace_id, id, %s, 'subscribed', now(), now() FROM contacts_contact "
            "WHERE workspace_id = %s",
            [contact_list.pk, workspace.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_contact, contacts_subscription")
    seed_s = time.perf_counter() - started
    made = [
        _campaign_seed(workspace, contact_list, user, name=f"Spring newsletter {n + 1}")
        for n in range(campaigns)
    ]
    return made, user, seed_s


def _campaign_seed(workspace, contact_list, user, *, name: str):
    from campaigns.services import campaign_audience_update, campaign_create, campaign_update
    from campaigns.starters import starter_get

    campaign = campaign_create(
        workspace=workspace,
        name=name,
        starter=starter_get("newsletter"),
        acting_user=user,
    )
    campaign = campaign_update(
        campaign=campaign,
        acting_user=user,
        subject='{{ first_name|default:"Hello" }}, the spring news',
        preheader="Lighter fabrics, brighter colours.",
        from_name="Bench Shop",
        from_email=f"hello@{DOMAIN}",
        html=_body(),
    )
    campaign_audience_update(
        campaign=campaign,
        include_lists=[contact_list],
        include_segments=[],
        exclude_lists=[],
        exclude_segments=[],
        tags=["Bench"],
        acting_user=user,
    )
    return campaign


# --- traffic shaping (the shaped variant) -------------------------------------------------

# The variants a run measures, in order (--shaping; --shaped-first reverses them).
VARIANTS = {"both": ["unshaped", "shaped"], "off": ["unshaped"], "on": ["shaped"]}
# The smtp transport relays from whatever address the kernel picks (only the mx transport
# binds a lane's source address), so a loopback address stands in for a sending IP.
SHAPED_SOURCE_IP = "127.0.0.1"
HIGH_MESSAGES_PER_MINUTE = 10_000_000
HIGH_MAX_CONNECTIONS = 1000


def _limits_raise() -> None:
    """Every provider's limits far above what this machine sends: the shaped send pays for
    its lanes (Redis counters, connection slots, claims by provider) but never waits."""
    from sending.models import ProviderLimit
    from sending.models.shaping import PROVIDERS

    for provider, _ in PROVIDERS:
        ProviderLimit.objects.update_or_create(
            provider=provider,
            defaults={
                "messages_per_minute": HIGH_MESSAGES_PER_MINUTE,
                "max_connections": HIGH_MAX_CONNECTIONS,
                "is_held": False,
            },
        )


def _shaping_set(*, enabled: bool) -> None:
    """Shaping is on while the default pool has a sending IP in service (state active: no
    warm-up cap; the domain is warmed up too), off once that IP is taken out of service."""
    from django.conf import settings

    from sending.models import IpPool, SendingIp

    if enabled:
        pool, _ = IpPool.objects.get_or_create(name="Bench shared", defaults={"is_default": True})
        SendingIp.objects.update_or_create(
            address=SHAPED_SOURCE_IP,
            defaults={
                "pool": pool,
                "helo_hostname": "mta1.bench-shop.example",
                "bound_host": "",
                "state": SendingIp.State.ACTIVE,
                "is_active": True,
            },
        )
        changed = 1
    else:
        # Unshaped as in the Delivery issue's figures: no IP in service (no pool at all
        # unless the shaped send came first).
        changed = SendingIp.objects.filter(is_active=True).update(is_active=False)
    if changed:
        # Workers read a pool's IPs and the limits again after this long.
        time.sleep(settings.SENDING_POLICY_CACHE_SECONDS + 0.5)


# --- the workers --------------------------------------------------------------------------


def _worker_commands(concurrency: int, profiled: bool) -> dict[str, list[str]]:
    """runstack's worker set-up (espsite/management/commands/runstack.py)."""
    celery = [sys.executable, "-m", "celery", "-A", "espsite"]
    # Profiled, the bulk worker runs through this file, which hooks its pool children.
    bulk_head = (
        [sys.executable, str(Path(__file__).resolve()), "--as-worker"] if profiled else celery
    )
    return {
        "bulk": [*bulk_head, "worker", "-Q", "default,send,tracking", "-n", "bench-bulk@%h",
                 "--concurrency", str(concurrency), "-l", "info"],
        "transactional": [*celery, "worker", "-Q", "transactional", "-n",
                          "bench-transactional@%h", "--concurrency", "1", "-l", "info"],
    }  # fmt: skip


def _workers_wait(children: Children, names: list[str], timeout: float = 90.0) -> None:
    from espsite.celery import app

    deadline = time.monotonic() + timeout
    wanted = {f"bench-{name}@{socket.gethostname()}" for name in names}
    while time.monotonic() < deadline:
        dead = children.dead()
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while starting")
        replies = app.control.ping(timeout=1.0)
        answered = {node for reply in replies for node in reply}
        if wanted <= answered:
            return
    raise RuntimeError(f"workers did not answer within {timeout:.0f} s")


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- the send ------------------------------------------------------------------------------


def _send(campaign, user, *, children: Children, logs: Path) -> dict:
    """Click Send and wait for the campaign to be sent; the timings."""
    from django.db.models import Count, Max, Min

    from campaigns.models import Campaign
    from campaigns.scheduling import campaign_schedule
    from sending.models import CampaignSend, Delivery, DeliveryAttempt
    from sending.tasks import campaigns_start_due_task

    started_at = time.time()
    started = time.perf_counter()
    campaign_schedule(campaign=campaign, send_at=None, acting_user=user)
    campaigns_start_due_task.delay()

    last_sent, last_change, last_report = -1, time.monotonic(), time.monotonic()
    while True:
        time.sleep(0.25)
        status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).get()
        if status == Campaign.Status.SENT:
            break
        dead = children.dead()
        if dead:
            raise RuntimeError(f"{', '.join(dead)} died during the send")
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            by_state = dict(
                Delivery.objects.filter(campaign=campaign)
                .values_list("state")
                .annotate(n=Count("id"))
                .values_list("state", "n")
            )
            _log(f"{time.perf_counter() - started:6.1f} s: {by_state}")
            sent = by_state.get(Delivery.State.SENT, 0)
            if sent != last_sent:
                last_sent, last_change = sent, time.monotonic()
            elif time.monotonic() - last_change > STALL_SECONDS:
                raise RuntimeError(
                    f"no progress for {STALL_SECONDS} s ({status}, {by_state}); bulk worker:\n"
                    + _tail(logs / "bulk.log")
                )
    polled_s = time.perf_counter() - started
    deliveries = Delivery.objects.filter(campaign=campaign)
    by_state = dict(
        deliveries.values_list("state").annotate(n=Count("id")).values_list("state", "n")
    )
    times = deliveries.filter(state=Delivery.State.SENT).aggregate(
        first=Min("sent_at"), last=Max("sent_at")
    )
    snapshot_at = CampaignSend.objects.get(campaign=campaign).started_at
    # The lanes the rows left on: a sending IP when shaped, none ("") otherwise.
    source_ips = {
        str(address or ""): count
        for address, count in deliveries.values_list("source_ip")
        .annotate(n=Count("id"))
        .values_list("source_ip", "n")
    }
    return {
        "by_state": by_state,
        "source_ips": source_ips,
        "attempts": DeliveryAttempt.objects.filter(delivery__campaign=campaign).count(),
        "sent": by_state.get(Delivery.State.SENT, 0),
        "send_s": times["last"].timestamp() - started_at,
        "snapshot_s": snapshot_at.timestamp() - started_at,
        "first_sent_s": times["first"].timestamp() - started_at,
        "polled_s": polled_s,
    }


def _sink_count(path: Path) -> int:
    """Messages the sink has taken so far, from its -c counters ("... mesg=N")."""
    text = path.read_text(errors="replace")
    counters = [chunk for chunk in text.replace("\r", "\n").split("\n") if "mesg=" in chunk]
    return int(counters[-1].rsplit("mesg=", 1)[1].split()[0]) if counters else 0


# --- the baseline ---------------------------------------------------------------------------


def _prebuilt(campaign) -> list[tuple[str, str, bytes]]:
    """BASELINE_DISTINCT messages of this campaign, built and signed by its own builder."""
    from django.conf import settings

    from sending.message import CampaignMessageBuilder
    from sending.models import Delivery

    campaign.refresh_from_db()
    builder = CampaignMessageBuilder(campaign, base_url=settings.BASE_URL)
    deliveries = Delivery.objects.filter(campaign=campaign).select_related("contact")
    messages = []
    for delivery in deliveries.order_by("pk")[:BASELINE_DISTINCT]:
        envelope = builder.build(
            delivery_id=delivery.pk, contact=delivery.contact, address=delivery.address
        )
        messages.append((envelope.mail_from, envelope.recipient, envelope.message))
    return messages


def _push(port, messages, count, barrier, results) -> None:
    """One baseline process: one connection, reused for `count` messages."""
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.example", timeout=30)
    client.ehlo()
    barrier.wait()
    refused = 0
    for n in range(count):
        mail_from, recipient, message = messages[n % len(messages)]
        try:
            client.sendmail(mail_from, [recipient], message)
        except smtplib.SMTPException:
            refused += 1
    client.quit()
    results.put((count, refused))


def _baseline(port: int, messages: list, total: int, processes: int) -> tuple[float, int]:
    # Spawned, not forked: a forked child runs Celery's and kombu's after-fork hooks on
    # the Redis sockets it shares with this process, and can hang in them.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results = context.Queue()
    shares = [total // processes + (1 if n < total % processes else 0) for n in range(processes)]
    workers = [
        context.Process(target=_push, args=(port, messages, share, barrier, results))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    outcomes = [results.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    refused = sum(r for _, r in outcomes)
    return elapsed, sum(c for c, _ in outcomes) - refused


# --- profiling (BENCH_SEND_PROFILE=phases|cprofile) ---------------------------------------

# The steps of chunk_send (sending/pipeline.py), wrapped in every pool child of the bulk
# worker: (module, attribute) -> phase. Module-level names are looked up at call time, so
# replacing them on the module reaches the pipeline's calls.
PHASES = {
    ("sending.pipeline", "chunk_send"): "chunk",
    ("sending.pipeline", "deliveries_claim"): "claim",
    ("sending.message.CampaignMessageBuilder", "build"): "build_and_sign",
    ("sending.pipeline", "deliveries_fail_unsent"): "fail_unsent",
    ("sending.pipeline", "deliveries_mark_in_flight"): "mark_in_flight",
    ("sending.pipeline", "campaign_pool"): "campaign_pool",
    ("sending.pipeline", "lane_grant"): "lane_grant",
    ("sending.shaping", "claimable_providers"): "lane_providers",
    ("sending.pipeline", "grant_finish"): "grant_finish",
    ("sending.pipeline", "grant_release"): "grant_release",
    ("sending.pipeline", "transport_for"): "transport_for",
    ("sending.transports.smtp.SmtpTransport", "send_many"): "transport",
    ("sending.pipeline", "deliveries_record"): "record",
    ("sending.pipeline", "_after_outcomes"): "after_outcomes",
    ("sending.pipeline", "campaign_finish_if_done"): "finish_if_done",
}
# Phases timed inside another phase (lane_providers inside lane_grant).
NESTED_PHASES = {"lane_providers"}


def _phases_install(totals: dict[str, list[float]]) -> None:
    """Wrap each phase's function: calls, wall seconds and main-thread CPU seconds."""
    import functools
    import importlib

    def timed(phase: str, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                total = totals.setdefault(phase, [0, 0.0, 0.0])
                total[0] += 1
                total[1] += time.perf_counter() - wall
                total[2] += time.thread_time() - cpu

        return wrapper

    for (path, name), phase in PHASES.items():
        try:
            owner = importlib.import_module(path)
        except ImportError:
            module, _, cls = path.rpartition(".")
            owner = getattr(importlib.import_module(module), cls)
        setattr(owner, name, timed(phase, getattr(owner, name)))


def _as_worker(argv: list[str]) -> None:
    """A Celery worker whose pool children time the chunk's phases (and, for cprofile,
    profile their main thread and the transport's loop thread) into $BENCH_SEND_WORKDIR."""
    import cProfile

    from celery import signals

    directory = Path(os.environ["BENCH_SEND_WORKDIR"])
    with_cprofile = os.environ[PROFILE_ENV] == "cprofile"
    profiles: list[tuple[str, cProfile.Profile]] = []
    totals: dict[str, list[float]] = {}
    tasks = {"first_start": 0.0, "last_end": 0.0, "busy": 0.0, "count": 0, "started": 0.0}
    last_dump = [0.0]

    def dump() -> None:
        pid = os.getpid()
        state = {"phases": totals, "tasks": tasks}
        (directory / f"{pid}-phases.json").write_text(json.dumps(state))
        for label, profile in profiles:
            # snapshot_stats, not dump_stats: that would disable the calling thread's profiler.
            profile.snapshot_stats()
            with (directory / f"{pid}-{label}.prof").open("wb") as handle:
                marshal.dump(profile.stats, handle)

    def start_in_thread(frame, event, arg):
        sys.setprofile(None)
        profile = cProfile.Profile()
        profiles.append((f"thread{len(profiles)}", profile))
        profile.enable()

    @signals.worker_process_init.connect(weak=False)
    def _start(**kwargs) -> None:
        _phases_install(totals)
        if with_cprofile:
            profile = cProfile.Profile()
            profiles.append(("main", profile))
            threading.setprofile(start_in_thread)  # the transport's loop thread, when it starts
            profile.enable()

    @signals.task_prerun.connect(weak=False)
    def _task_start(**kwargs) -> None:
        tasks["started"] = time.perf_counter()
        tasks["first_start"] = tasks["first_start"] or time.time()

    @signals.task_postrun.connect(weak=False)
    def _task_end(**kwargs) -> None:
        tasks["busy"] += time.perf_counter() - tasks["started"]
        tasks["count"] += 1
        tasks["last_end"] = time.time()
        if time.monotonic() - last_dump[0] > 2:
            last_dump[0] = time.monotonic()
            dump()

    @signals.worker_process_shutdown.connect(weak=False)
    def _stop(**kwargs) -> None:
        dump()

    from celery.bin.celery import main

    sys.argv = ["celery", "-A", "espsite", *argv]
    main()


def _phases_summary(directory: Path, sent: int) -> dict:
    """The pool children's phases added up: wall and CPU seconds, ms per message sent,
    share of the children's time from their first task to their last."""
    phases: dict[str, list[float]] = {}
    span = busy = 0.0
    count = 0
    for path in directory.glob("*-phases.json"):
        state = json.loads(path.read_text())
        for phase, (calls, wall, cpu) in state["phases"].items():
            total = phases.setdefault(phase, [0, 0.0, 0.0])
            total[0], total[1], total[2] = total[0] + calls, total[1] + wall, total[2] + cpu
        tasks = state["tasks"]
        if tasks["count"]:
            span += tasks["last_end"] - tasks["first_start"]
            busy += tasks["busy"]
            count += tasks["count"]
    if not phases:
        return {}
    chunk_wall = phases.get("chunk", [0, 0.0, 0.0])[1]
    finish_wall = phases.get("finish_if_done", [0, 0.0, 0.0])[1]
    parts = sum(
        wall
        for phase, (_, wall, _) in phases.items()
        if phase not in {"chunk", "finish_if_done", *NESTED_PHASES}
    )
    # Inside chunk_send but in no phase: loading the campaign, grouping results. Inside a
    # task but outside its chunks: its loop and re-enqueue; between tasks, the child waits
    # for Celery to hand it the next one.
    phases["chunk_rest"] = [0, chunk_wall - parts, 0.0]
    phases["task_outside_chunks"] = [count, busy - chunk_wall - finish_wall, 0.0]
    phases["between_tasks"] = [0, span - busy, 0.0]
    return {
        "children_span_s": round(span, 2),
        "tasks": count,
        "by_phase": {
            phase: {
                "calls": int(calls),
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
                "wall_ms_per_message": round(1000 * wall / sent, 3),
                "share": round(wall / span, 3) if span else None,
            }
            for phase, (calls, wall, cpu) in sorted(phases.items(), key=lambda item: -item[1][1])
            if phase != "chunk"
        },
    }


def _cprofile_summary(directory: Path) -> str:
    """Listings of the merged profiles, written beside them; the file's path."""
    import io
    import pstats

    listing = io.StringIO()
    for pattern, title, sorts in (
        ("*-main.prof", "pool children, main thread", ("cumulative", "tottime")),
        ("*-thread*.prof", "pool children, transport loop thread", ("tottime",)),
    ):
        files = sorted(str(path) for path in directory.glob(pattern))
        if not files:
            continue
        stats = pstats.Stats(*files, stream=listing)
        for sort in sorts:
            print(f"=== {title}, by {sort} ===", file=listing)
            stats.sort_stats(sort).print_stats(40)
    path = directory / "cprofile.txt"
    path.write_text(listing.getvalue())
    return str(path)


# --- main ---------------------------------------------------------------------------------------


def _variant_figures(send: dict, usage: dict, sampler: Sampler, sink_messages: int) -> dict:
    """What one measured send gave: its rate, memory, states and CPU cost."""
    figures = {
        "messages_per_s": round(send["sent"] / send["send_s"]),
        "peak_rss_mb": round(sampler.peak_rss_mb, 1),
        "peak_pss_mb": round(sampler.peak_pss_mb, 1),
        "peak_process_rss_mb": round(sampler.peak_process_rss_mb, 1),
        "sent": send["sent"],
        "states": send["by_state"],
        "attempts": send["attempts"],
        "source_ips": send["source_ips"],
        "sink_messages": sink_messages,
        "send_s": round(send["send_s"], 2),
        "snapshot_s": round(send["snapshot_s"], 2),
        "first_sent_s": round(send["first_sent_s"], 2),
        **usage,
    }
    # The stack's CPU per message, whatever else ran meanwhile: the rate this machine's
    # cores could reach with nothing else on them and no core ever idle (an upper bound).
    stack_cpu_s = sum(v for k, v in usage["cpu_s"].items() if k != "others")
    figures["stack_cpu_ms_per_message"] = round(1000 * stack_cpu_s / send["sent"], 3)
    figures["cpu_bound_messages_per_s"] = round(os.cpu_count() * send["sent"] / stack_cpu_s)
    return figures


def _median(values) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(median, 3)


def _run(options: argparse.Namespace, children: Children, workdir: Path, made: set) -> dict:
    sink_binary = _smtp_sink_binary()
    sink_port = free_port()
    _environment(options, sink_port)
    profiling = os.environ.get(PROFILE_ENV, "")
    if profiling not in {"", "phases", "cprofile"}:
        sys.exit(f"{PROFILE_ENV} is {profiling!r}: use phases or cprofile.")
    os.environ["BENCH_SEND_WORKDIR"] = str(workdir)
    variants = VARIANTS[options.shaping]
    if options.shaped_first:
        variants = variants[::-1]
    # Rounds alternate the order (A B, B A, A B, ...): neither variant always goes first
    # onto warm workers or a machine whose other load drifts.
    order = [
        variant
        for number in range(options.rounds)
        for variant in (variants if number % 2 == 0 else variants[::-1])
    ]

    _log(f"recreating {options.database_url.rsplit('/', 1)[1]}, flushing {options.redis_url}")
    made.add("database")
    database_recreate(options.database_url)
    redis_flush(options.redis_url)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _log(f"seeding {options.recipients} contacts, a campaign for each send: {', '.join(order)}")
    campaigns, user, seed_s = _seed(options.recipients, len(order))
    _limits_raise()

    sink_log = workdir / "sink.log"
    sink = children.start(
        "sink",
        [sink_binary, "-c", "-u", options.sink_user, f"127.0.0.1:{sink_port}", "1000"],
        log=sink_log,
    )
    logs = workdir
    commands = _worker_commands(options.concurrency, bool(profiling))
    workers = {name: children.start(name, command, log=logs / f"{name}.log").pid
               for name, command in commands.items()}  # fmt: skip
    _log("waiting for the workers")
    try:
        _workers_wait(children, list(commands))
    except RuntimeError:
        _log(_tail(logs / "bulk.log"))
        raise

    figures: dict[str, list[dict]] = {variant: [] for variant in variants}
    sent_total = 0
    sink_before = 0
    for variant, campaign in zip(order, campaigns, strict=True):
        _shaping_set(enabled=variant == "shaped")
        sampler = Sampler(
            workers=workers, sink_pid=sink.pid, database=settings.DATABASES["default"]["NAME"]
        )
        sampler.sample(baseline=True)
        sampler.start()
        _log(
            f"Send ({variant}): {options.recipients} recipients through smtp-sink on "
            f"127.0.0.1:{sink_port}"
        )
        try:
            send = _send(campaign, user, children=children, logs=logs)
        finally:
            usage = sampler.stop()
        time.sleep(0.5)
        sink_after = _sink_count(sink_log)
        figures[variant].append(_variant_figures(send, usage, sampler, sink_after - sink_before))
        sink_before = sink_after
        sent_total += send["sent"]
        _log(f"{variant}: {figures[variant][-1]['messages_per_s']} messages/s")

    messages = _prebuilt(campaigns[0])
    total = figures[order[0]][0]["sent"]
    _log(f"baseline: {total} messages from {options.baseline_processes} smtplib processes")
    baseline_s, baseline_sent = _baseline(sink_port, messages, total, options.baseline_processes)
    profile = {}
    if profiling:
        children.stop()  # the pool children write their last figures on the way out
        profile = _phases_summary(workdir, sent_total)
        if profiling == "cprofile":
            profile["listing"] = _cprofile_summary(workdir)

    baseline_per_s = baseline_sent / baseline_s
    # Headline rates: the median over the rounds; the other figures: the last round's.
    unshaped, shaped = figures.get("unshaped", []), figures.get("shaped", [])
    result: dict = {"recipients": options.recipients}
    if unshaped:
        result["messages_per_s"] = _median(run["messages_per_s"] for run in unshaped)
    if shaped:
        result["shaped_messages_per_s"] = _median(run["messages_per_s"] for run in shaped)
    if unshaped and shaped:
        # The shaped send over the unshaped one of the same round, same machine; and the
        # same for the stack's CPU per message, which other load on the machine disturbs less.
        pairs = list(zip(unshaped, shaped, strict=True))
        result["shaped_ratio"] = _median(
            s["messages_per_s"] / u["messages_per_s"] for u, s in pairs
        )
        result["shaped_cpu_ratio"] = _median(
            s["stack_cpu_ms_per_message"] / u["stack_cpu_ms_per_message"] for u, s in pairs
        )
    result["baseline_messages_per_s"] = round(baseline_per_s)
    first = figures[order[0]][0]
    result["ratio"] = round(first["messages_per_s"] / baseline_per_s, 3)
    if options.rounds > 1:
        result["rounds_messages_per_s"] = {
            variant: [run["messages_per_s"] for run in runs] for variant, runs in figures.items()
        }
        # What else the machine ran during each send: a round whose two sends met very
        # different loads says little about the variants.
        result["rounds_others_cpu_s"] = {
            variant: [run["cpu_s"]["others"] for run in runs] for variant, runs in figures.items()
        }
    for prefix, runs in (("", unshaped), ("shaped_", shaped)):
        if runs:
            details = {key: value for key, value in runs[-1].items() if key != "messages_per_s"}
            result.update({f"{prefix}{key}": value for key, value in details.items()})
    result.update(
        {
            "order": order,
            "baseline_s": round(baseline_s, 2),
            "message_bytes": round(sum(len(m) for _, _, m in messages) / len(messages)),
            "chunk_size": settings.SENDING_CHUNK_SIZE,
            "fanout": settings.SENDING_FANOUT,
            "task_seconds": settings.SENDING_TASK_SECONDS,
            "smtp_connections": settings.SENDING_SMTP_CONNECTIONS,
            "bulk_concurrency": options.concurrency,
            "baseline_processes": options.baseline_processes,
            "debug": settings.DEBUG,
            "seed_s": round(seed_s, 1),
        }
    )
    if profiling:
        result["profiled"] = profiling
        result["profile"] = profile
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--as-worker":
        _as_worker(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="5,000 recipients")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp_bench_send"
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--concurrency", type=int, default=2, help="the bulk worker's")
    parser.add_argument("--baseline-processes", type=int, default=4)
    parser.add_argument(
        "--shaping",
        choices=sorted(VARIANTS),
        default="both",
        help="send without traffic shaping (off), with it and limits set high (on), or both "
        "in turn, each its own campaign to the same contacts (both)",
    )
    parser.add_argument(
        "--shaped-first", action="store_true", help="with --shaping both: the shaped send first"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="send each variant this many times, the order alternating (medians reported)",
    )
    parser.add_argument("--sink-user", default="nobody", help="smtp-sink drops root to this")
    parser.add_argument(
        "--keep", action="store_true", help="keep the database and the workers' logs afterwards"
    )
    options = parser.parse_args()
    if options.quick:
        options.recipients = 5_000

    targets_check(options)

    # SIGTERM ends the bench through its finally blocks, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    children = Children(last=("sink",), log=_log)
    workdir = Path(tempfile.mkdtemp(prefix="bench-send-"))
    made: set[str] = set()
    failed = True
    try:
        result = _run(options, children, workdir, made)
        failed = False
    finally:
        children.stop()
        bench_data_drop(options, made)
        if failed or options.keep or os.environ.get(PROFILE_ENV):
            _log(f"worker and sink logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
