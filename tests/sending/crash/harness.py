"""Real processes for the crash tests, all on loopback and spare ports: a PostgreSQL cluster
and a Redis of their own (never the shared ones, which other tests use), the FaultySink as a
process, Celery workers and beat, and the Django-side commands of control.py.

    cluster = PostgresCluster.create(port=free_port())     # initdb + start, as `postgres`
    redis = RedisServer(root=..., port=free_port()).start()
    stack = Stack(root=..., env=process_env(...))
    stack.sink(port=..., record=..., delay=0.02)
    stack.worker("w1"); stack.beat()
    campaign_id = stack.control("setup", "--recipients", "500")["campaign_id"]

Every process is started in a session of its own and ended by its pid (Stack.close()), so
that a test that fails leaves nothing running. Reads of the database go through psycopg
with a fresh connection each time, so that they survive a restart of the cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
_PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
_PG_BIN = _PG_BINS[-1] if _PG_BINS else Path(shutil.which("pg_ctl") or "pg_ctl").parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll until `predicate` returns something truthy; that value. Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Waited {timeout:.0f} s for {what}.")
        time.sleep(interval)


def private_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the `postgres` user may own when running as root
    (initdb and postgres refuse to run as root; pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, user="postgres", group="postgres")
    return path


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


# --- PostgreSQL ---------------------------------------------------------------------------


@dataclass
class PostgresCluster:
    root: Path
    port: int

    @classmethod
    def create(cls, *, port: int) -> PostgresCluster:
        cluster = cls(root=private_dir("esp-crash-pg-"), port=port)
        cluster._pg(
            "initdb", "-D", str(cluster.data), "--auth=trust", "-U", "postgres", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        cluster.start()
        return cluster

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _pg(self, program: str, *args: str, check: bool = True) -> None:
        done = subprocess.run(
            _as_owner([str(_PG_BIN / program), *args]),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{output}")

    def start(self) -> None:
        # fsync off: a fast shutdown still checkpoints, and no test kills the postmaster.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off -c full_page_writes=off "
            "-c max_connections=100"
        )
        log = str(self.root / "postgres.log")
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "30", "-o", options, "start"
        )

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every session is cut, the server comes back."""
        log = str(self.root / "postgres.log")  # else the new server writes to our pipe
        self._pg(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "30", "-m", "fast", "restart"
        )

    def destroy(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-m", "immediate", "stop",
                 check=False)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, params: tuple = (), *, dbname: str = "postgres") -> list[tuple]:
        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


# --- Redis --------------------------------------------------------------------------------


@dataclass
class RedisServer:
    root: Path
    port: int
    process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.root),
             "--logfile", str(self.root / "redis.log")],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        wait_for(self._answers, timeout=10, what="redis-server")
        return self

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, *, down_seconds: float = 0.5) -> None:
        """Stop and start again: nothing is saved, so every queue and lock is gone."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


# --- the platform's processes -------------------------------------------------------------


def process_env(
    *, database_url: str, redis_url: str, smtp_port: int, root: Path, **extra: str
) -> dict[str, str]:
    """The environment of workers, beat and control commands: the test keys (pytest-env
    put them into this process's environment), our own services, and second-long leases."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DEBUG="0",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_RESULT_BACKEND=redis_url,
        CELERY_TASK_ALWAYS_EAGER="0",
        DELIVERY_LEASE_SECONDS="2",
        DELIVERY_SWEEP_SECONDS="1",
        DELIVERY_FIRST_RETRY_SECONDS="1",
        SENDING_TRANSPORT="smtp",
        SENDING_SMTP_HOST="127.0.0.1",
        SENDING_SMTP_PORT=str(smtp_port),
        SENDING_SMTP_SECURITY="none",
        SENDING_SMTP_USERNAME="",
        SENDING_SMTP_PASSWORD="",
        SENDING_SMTP_TIMEOUT_SECONDS="10",
        SENDING_CHUNK_SIZE="20",
        SENDING_TASK_SECONDS="1",
        SENDING_FANOUT="4",
        # The domain is verified once by control.py's own DNS server; nothing else asks.
        DNS_RESOLVERS="127.0.0.1:9",
        DNS_CHECKS_ENABLED="0",
        VAR_DIR=str(root / "var"),
        MEDIA_ROOT=str(root / "media"),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Stack:
    """The processes of one test, by name; close() ends every one still running."""

    root: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _started: list[subprocess.Popen] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        kwargs.setdefault("stdout", log)
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stderr=log,
            start_new_session=True,
            **kwargs,
        )
        log.close()
        self.processes[name] = process
        self._started.append(process)
        return process

    def sink(
        self, *, port: int, record: Path, delay: float = 0.0, behaviours: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        argv = [PYTHON, "-m", "tests.sending.sinks", "--port", str(port), "--record", str(record)]
        argv += ["--delay", str(delay)]
        for behaviour in behaviours:
            argv += ["--behaviour", behaviour]
        process = self._spawn("sink", argv, stdout=subprocess.PIPE)
        ready, _, _ = select.select([process.stdout], [], [], 20)
        line = process.stdout.readline().decode() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("READY"):
            raise RuntimeError(f"The sink did not start: {line!r} {self.log_tail('sink')}")
        return process

    def worker(self, name: str) -> subprocess.Popen:
        """A Celery worker on the send and default queues: one process (solo pool), so that
        SIGKILL or SIGSTOP hits everything it runs."""
        argv = [PYTHON, "-m", "celery", "-A", "espsite", "worker", "-Q", "send,default",
                "--pool", "solo", "-n", f"{name}@%h", "-l", "warning",
                "--without-mingle", "--without-gossip"]  # fmt: skip
        return self._spawn(name, argv)

    def beat(self) -> subprocess.Popen:
        argv = [PYTHON, "-m", "celery", "-A", "espsite", "beat", "-l", "warning",
                "-s", str(self.root / "beat-schedule"),
                "--pidfile", str(self.root / "beat.pid")]  # fmt: skip
        return self._spawn("beat", argv)

    def signal(self, name: str, signum: signal.Signals) -> None:
        os.kill(self.processes[name].pid, signum)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self, *names: str, timeout: float = 30) -> None:
        """SIGTERM (Celery's warm shutdown: the running task finishes), then wait."""
        for name in names:
            self.processes[name].terminate()
        for name in names:
            try:
                self.processes[name].wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.processes[name].kill()
                self.processes[name].wait()
                raise

    def control(self, *args: str) -> Any:
        """Run a command of control.py against this stack's database; its JSON answer."""
        done = subprocess.run(
            [PYTHON, "-m", "tests.sending.crash.control", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"control {args} failed:\n{done.stderr.decode()[-3000:]}")
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{self.log_tail(name)}" for name in sorted(self.processes)
        )

    def close(self) -> None:
        for process in self._started:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)  # a frozen process cannot die
                    os.kill(process.pid, signal.SIGKILL)
        for process in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


# --- what the sink and the database say ---------------------------------------------------


@dataclass(frozen=True)
class SinkMessage:
    recipient: str
    message_id: str
    delivery_id: int | None  # from the VERP MAIL FROM


def sink_messages(record: Path) -> list[SinkMessage]:
    """Every message the sink accepted, its delivery read back from the return path."""
    from sending.verp import verp_read

    if not record.exists():
        return []
    out = []
    for line in record.read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        for recipient in item["rcpt_tos"]:
            out.append(
                SinkMessage(
                    recipient=recipient.lower(),
                    message_id=item["message_id"],
                    delivery_id=verp_read(item["mail_from"]),
                )
            )
    return out


def duplicates(messages: list[SinkMessage]) -> dict[str, int]:
    """Recipients, delivery ids and Message-IDs seen more than once, with their counts."""
    found: dict[str, int] = {}
    for key in ("recipient", "delivery_id", "message_id"):
        counts = Counter(getattr(m, key) for m in messages)
        found.update({f"{key}={v}": n for v, n in counts.items() if n > 1})
    return found


@dataclass
class Ledger:
    """Reads of the stack's database (a new connection each time: restarts in between)."""

    cluster: PostgresCluster
    dbname: str
    campaign_id: int = 0

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        return self.cluster.execute(sql, params, dbname=self.dbname)

    def by_state(self) -> dict[str, int]:
        rows = self.rows(
            "SELECT state, count(*) FROM sending_delivery WHERE campaign_id = %s GROUP BY state",
            self.campaign_id,
        )
        return dict(rows)  # type: ignore[arg-type]

    def done(self) -> int:
        """Deliveries that will produce no more mail."""
        counts = self.by_state()
        open_ = ("queued", "claimed", "in_flight", "deferred", "holding")
        return sum(n for state, n in counts.items() if state not in open_)

    def status(self) -> str:
        return self.rows("SELECT status FROM campaigns_campaign WHERE id = %s", self.campaign_id)[
            0
        ][0]

    def count(self, state: str) -> int:
        return self.by_state().get(state, 0)

    def leased(self) -> dict[int, tuple[str, Any]]:
        """Rows under a lease now: id -> (state, lease token)."""
        rows = self.rows(
            "SELECT id, state, lease_token FROM sending_delivery WHERE campaign_id = %s "
            "AND state IN ('claimed', 'in_flight')",
            self.campaign_id,
        )
        return {pk: (state, token) for pk, state, token in rows}

    def addresses(self, *states: str) -> dict[int, str]:
        rows = self.rows(
            "SELECT id, lower(address) FROM sending_delivery WHERE campaign_id = %s "
            "AND state = ANY(%s)",
            self.campaign_id,
            list(states),
        )
        return dict(rows)  # type: ignore[arg-type]

    def attempts(self, delivery_ids: list[int]) -> dict[int, int]:
        rows = self.rows(
            "SELECT delivery_id, count(*) FROM sending_deliveryattempt "
            "WHERE delivery_id = ANY(%s) GROUP BY delivery_id",
            delivery_ids,
        )
        return dict(rows)  # type: ignore[arg-type]

    def attempt_outcomes(self) -> dict[str, int]:
        """DeliveryAttempt rows of the campaign by outcome (one per recorded attempt)."""
        rows = self.rows(
            "SELECT a.outcome, count(*) FROM sending_deliveryattempt a "
            "JOIN sending_delivery d ON d.id = a.delivery_id WHERE d.campaign_id = %s "
            "GROUP BY a.outcome",
            self.campaign_id,
        )
        return dict(rows)  # type: ignore[arg-type]
