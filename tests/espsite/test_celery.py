"""A task goes through the real Redis broker to a real worker process and back."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from espsite.celery import app
from espsite.tasks import ping_task
from tests.conftest import redis_test_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker():
    url = redis_test_url()
    env = {**os.environ, "REDIS_URL": url, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "espsite",
            "worker",
            "-Q",
            "default",
            "--pool",
            "solo",
            "-n",
            "roundtrip@%h",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def test_configuration_is_json_only_with_late_acks():
    conf = app.conf
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert {q.name for q in conf.task_queues} == {"default", "transactional", "send", "tracking"}
    assert app.amqp.router.route({}, "accounts.tasks.system_mail_send_task")["queue"].name == (
        "transactional"
    )


@pytest.fixture
def not_eager():
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


@pytest.mark.django_db
def test_task_round_trips_through_redis_and_worker_heartbeat_shows_in_healthz(
    worker, client, not_eager
):
    result = ping_task.delay("hello")
    assert result.get(timeout=60) == "pong:hello"

    deadline = time.time() + 30
    while True:
        report = client.get("/healthz").json()
        names = [w["name"] for w in report["checks"]["workers"]["workers"] if w["fresh"]]
        if any(name.startswith("roundtrip@") for name in names):
            break
        assert time.time() < deadline, f"no heartbeat: {report}"
        time.sleep(0.5)
    assert report["status"] == "ok"


def test_every_beat_entry_names_a_task_a_worker_knows():
    from espsite.celery import app

    app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    for name, entry in app.conf.beat_schedule.items():
        assert entry["task"] in app.tasks, name
