"""What the process benchmarks (send.py, mailin.py) share: a bench database and Redis
database of their own, dropped and flushed around each run, and the child processes they
start (workers, listeners, sinks), each in its own session and ended with the bench."""

import argparse
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the bench dies, even by SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def targets_check(options: argparse.Namespace) -> None:
    """The bench drops its database and flushes its Redis database: never shared ones."""
    database = options.database_url.rsplit("/", 1)[1]
    if database in {"esp", "postgres", "template0", "template1", "test", "root"}:
        sys.exit(f"--database-url names {database!r}: the bench drops it; use a bench database.")
    redis_db = options.redis_url.rsplit("/", 1)[1]
    if not redis_db.isdigit() or redis_db == "0":
        sys.exit("--redis-url needs a database number of its own (not 0): it is flushed.")


def database_recreate(url: str, *, drop_only: bool = False) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def redis_flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


class Children:
    """Every process the bench starts, each in a session of its own; stop() ends them all.

    `last`: names stopped after the others (a sink that must outlive the workers feeding
    it); `log`: where to say that a child had to be killed.
    """

    def __init__(self, *, last: tuple[str, ...] = (), log: Callable[[str], None] = print):
        self.processes: dict[str, subprocess.Popen] = {}
        self.last = last
        self.log = log

    def start(self, name: str, command: list[str], *, log: Path) -> subprocess.Popen:
        with log.open("wb") as handle:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.processes[name] = process
        return process

    def dead(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self, grace: float = 20.0) -> None:
        order = sorted(self.processes.items(), key=lambda item: item[0] in self.last)
        for _, process in order:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, process in order:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{name} did not stop in {grace:.0f} s; killing it")
        for _, process in order:
            # The whole group: pool children of a worker stopped the hard way, too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()


def environment_base(*, name: str, database_url: str, redis_url: str) -> dict[str, str]:
    """The settings every benchmark sets for itself and the processes it starts (they
    inherit os.environ): its database and Redis, production mode (no query log kept in
    memory) unless the caller chose DEBUG, and throw-away keys shared by all of them (the
    one that signs tokens, the one that seals DKIM keys); no DNS checks."""
    env = os.environ
    env["DJANGO_SETTINGS_MODULE"] = "espsite.settings"
    env["DATABASE_URL"] = database_url
    for setting in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env[setting] = redis_url
    env["CACHE_KEY_PREFIX"] = f"bench-{name}"
    env["CELERY_TASK_ALWAYS_EAGER"] = "0"
    env.setdefault("DEBUG", "0")
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    if "FIELD_ENCRYPTION_KEY" not in env:
        from cryptography.fernet import Fernet

        env["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    env["DNS_CHECKS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def bench_data_drop(options: argparse.Namespace, made: set[str]) -> None:
    """After a run, whatever it came to: close this process's connections, empty the
    bench's Redis database and drop its database (unless --keep), if the run made them."""
    if "database" not in made:
        return
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
    with contextlib.suppress(Exception):
        redis_flush(options.redis_url)
    if not options.keep:
        with contextlib.suppress(Exception):
            database_recreate(options.database_url, drop_only=True)
