"""`make run`'s process supervisor: everything starts on loopback and Ctrl-C stops it all."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import redis_test_url

ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(180)
def test_runstack_serves_login_and_stops_everything_on_ctrl_c(tmp_path, free_port):
    web_port, sink_port = free_port(), free_port()
    url = redis_test_url()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "SMTP_SINK_PORT": str(sink_port),
        "EMAIL_PORT": str(sink_port),
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "STATIC_STORAGE_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "DEBUG": "1",
    }
    stack = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--port", str(web_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = []
        deadline = time.time() + 120
        for line in stack.stdout:
            output.append(line)
            if "ESP is running at" in line:
                break
            assert time.time() < deadline, "".join(output)
        else:
            pytest.fail("runstack ended before its banner:\n" + "".join(output))

        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/accounts/login/") as response:
            assert response.status == 200
            assert b"Sign in" in response.read()
        assert _listening(sink_port)

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=60) == 0
        assert not _listening(web_port)
        assert not _listening(sink_port)
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
