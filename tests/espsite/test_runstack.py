"""`make run`'s process supervisor: everything starts on loopback and Ctrl-C stops it all."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import redis_test_url

ROOT = Path(__file__).resolve().parents[2]


def _assert_dns_sandbox_answers(port: int, output: list[str]) -> None:
    """The sandbox publishes the platform's own names and forwards nothing."""
    import dns.message
    import dns.query
    import dns.rcode

    deadline = time.time() + 30
    while True:
        try:
            spf = dns.query.udp(
                dns.message.make_query(settings.SENDING_SPF_DOMAIN, "TXT"),
                "127.0.0.1",
                port=port,
                timeout=1,
            )
            break
        except (dns.exception.Timeout, OSError):  # not listening yet
            assert time.time() < deadline, "no answer from the DNS sandbox:\n" + "".join(output)
            time.sleep(0.2)
    assert "v=spf1" in spf.answer[0].to_text()
    outside = dns.query.udp(
        dns.message.make_query("example.com", "A"), "127.0.0.1", port=port, timeout=2
    )
    assert outside.rcode() == dns.rcode.NXDOMAIN


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(180)
@pytest.mark.django_db
def test_runstack_serves_login_and_stops_everything_on_ctrl_c(tmp_path, free_port):
    from django.db import connection

    database = connection.settings_dict
    web_port, sink_port, dns_port = free_port(), free_port(), free_port()
    url = redis_test_url()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "SMTP_SINK_PORT": str(sink_port),
        "DNS_SANDBOX_PORT": str(dns_port),
        "MAILIN_PORT": str(free_port()),
        "EMAIL_PORT": str(sink_port),
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "STATIC_STORAGE_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "DEBUG": "1",
        # The test database: its keys are the test run's, like its FIELD_ENCRYPTION_KEY.
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database['NAME']}",
    }
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(web_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    banner = threading.Event()

    def read_output():  # keep reading, so the children never block on a full pipe
        for line in stack.stdout:
            output.append(line)
            if "ESP is running at" in line:
                banner.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        if not banner.wait(timeout=120):
            pytest.fail("no banner from runstack:\n" + "".join(output))

        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/accounts/login/") as response:
            assert response.status == 200
            assert b"Sign in" in response.read()
        assert _listening(sink_port)
        _assert_dns_sandbox_answers(dns_port, output)

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=60) == 0
        assert not _listening(web_port)
        assert not _listening(sink_port)
    finally:
        if stack.poll() is None:
            stack.kill()  # the children are sent SIGTERM when runstack dies
            stack.wait()


@pytest.mark.timeout(180)
@pytest.mark.django_db
def test_children_stop_when_runstack_is_killed(tmp_path, free_port):
    """Even a SIGKILL of the supervisor leaves no server behind holding a port."""
    from django.db import connection

    web_port, sink_port, dns_port = free_port(), free_port(), free_port()
    url = redis_test_url()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "SMTP_SINK_PORT": str(sink_port),
        "DNS_SANDBOX_PORT": str(dns_port),
        "MAILIN_PORT": str(free_port()),
        "EMAIL_PORT": str(sink_port),
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(web_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (_listening(web_port) and _listening(sink_port)):
            assert time.time() < deadline, "runstack did not start"
            time.sleep(0.3)
    finally:
        stack.kill()
        stack.wait()
    deadline = time.time() + 30
    while _listening(web_port) or _listening(sink_port):
        assert time.time() < deadline, "a child of runstack outlived it"
        time.sleep(0.3)
