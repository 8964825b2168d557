"""Fixtures of the crash tests: a PostgreSQL cluster of their own (a migrated template
database, copied per test) and, per test, a Redis, a sink and the platform's processes."""

import itertools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sending.crash.harness import (
    PYTHON,
    REPO,
    Ledger,
    PostgresCluster,
    RedisServer,
    SinkMessage,
    Stack,
    free_port,
    private_dir,
    process_env,
    sink_messages,
)

TEMPLATE = "esp_template"
_database_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def crash_cluster() -> Iterator[PostgresCluster]:
    """initdb, start and migrate once per module; each test copies the template."""
    cluster = PostgresCluster.create(port=free_port())
    try:
        cluster.execute(f"CREATE DATABASE {TEMPLATE}")
        env = process_env(
            database_url=cluster.url(TEMPLATE),
            redis_url="redis://127.0.0.1:9/0",
            smtp_port=9,
            root=cluster.root,
        )
        done = subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=REPO,
            env=env,
            check=False,
            capture_output=True,
            timeout=180,
        )
        if done.returncode != 0:
            pytest.fail(f"migrate failed:\n{done.stderr.decode()[-3000:]}", pytrace=False)
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class CrashRun:
    """One test's stack: its database, Redis, sink and processes."""

    cluster: PostgresCluster
    redis: RedisServer
    stack: Stack
    ledger: Ledger
    record: Path
    smtp_port: int

    def launch(
        self,
        *,
        recipients: int,
        workers: tuple[str, ...] = ("w1", "w2"),
        delay: float = 0.02,
        behaviours: tuple[str, ...] = (),
    ) -> int:
        """Data, sink, beat and workers up, then the campaign started; its id."""
        self.ledger.campaign_id = self.stack.control("setup", "--recipients", str(recipients))[
            "campaign_id"
        ]
        self.stack.sink(port=self.smtp_port, record=self.record, delay=delay, behaviours=behaviours)
        self.stack.beat()
        for name in workers:
            self.stack.worker(name)
        assert self.stack.control("start") == {"started": [self.ledger.campaign_id]}
        return self.ledger.campaign_id

    def messages(self) -> list[SinkMessage]:
        return sink_messages(self.record)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"crash_report_{report.when}", report)
    return report


@pytest.fixture
def crash_run(crash_cluster: PostgresCluster, request, tmp_path: Path) -> Iterator[CrashRun]:
    root = private_dir("esp-crash-run-")
    dbname = f"run_{next(_database_numbers)}"
    crash_cluster.execute(f"CREATE DATABASE {dbname} TEMPLATE {TEMPLATE}")
    redis = RedisServer(root=root, port=free_port()).start()
    smtp_port = free_port()
    env = process_env(
        database_url=crash_cluster.url(dbname),
        redis_url=redis.url(),
        smtp_port=smtp_port,
        root=root,
    )
    stack = Stack(root=root, env=env)
    run = CrashRun(
        cluster=crash_cluster,
        redis=redis,
        stack=stack,
        ledger=Ledger(cluster=crash_cluster, dbname=dbname),
        record=root / "sink.jsonl",
        smtp_port=smtp_port,
    )
    try:
        yield run
    finally:
        stack.close()
        redis.stop()
        report = getattr(request.node, "crash_report_call", None)
        if report is not None and report.failed:
            # pytest keeps tmp_path of the last runs: the whole logs stay there.
            for log in [*root.glob("*.log"), crash_cluster.root / "postgres.log", run.record]:
                if log.exists():
                    shutil.copy(log, tmp_path / log.name)
            print(f"Logs in {tmp_path}\n{stack.logs()}")  # under "Captured stdout teardown"
        crash_cluster.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        shutil.rmtree(root, ignore_errors=True)
