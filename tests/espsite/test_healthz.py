import subprocess
import time

import pytest
import redis

pytestmark = pytest.mark.django_db


def test_healthz_reports_services_as_json(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["checks"]["database"] == {"ok": True}
    assert report["checks"]["redis"] == {"ok": True}
    assert report["checks"]["broker"] == {"ok": True}
    # No worker has sent a heartbeat into this test's Redis database.
    assert report["status"] == "degraded"
    assert report["checks"]["workers"] == {"ok": False, "workers": []}


def test_healthz_reports_fresh_and_stale_workers(client, settings):
    from espsite.health import heartbeat_record

    heartbeat_record(worker="bulk@host-a", at=time.time())
    heartbeat_record(worker="bulk@host-b", at=time.time() - 600)
    report = client.get("/healthz").json()
    assert report["status"] == "ok"
    workers = {w["name"]: w["fresh"] for w in report["checks"]["workers"]["workers"]}
    assert workers == {"bulk@host-a": True, "bulk@host-b": False}


def test_healthz_reports_a_stopped_redis(client, settings, free_port):
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.time() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert time.time() < deadline, "test redis-server did not start"
                time.sleep(0.05)
        settings.REDIS_URL = settings.CELERY_BROKER_URL = url
        assert client.get("/healthz").json()["checks"]["redis"] == {"ok": True}

        server.terminate()
        server.wait(timeout=10)
        response = client.get("/healthz")
        assert response.status_code == 503
        report = response.json()
        assert report["status"] == "down"
        assert report["checks"]["redis"]["ok"] is False
        assert report["checks"]["broker"]["ok"] is False
        assert report["checks"]["database"] == {"ok": True}
    finally:
        server.kill()
        server.wait()


def test_healthz_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code in (200, 503)
    assert client.get("/accounts/login/").status_code == 301


def test_healthz_answers_a_probe_by_node_address(client):
    """Load balancers send the node's IP as Host, which ALLOWED_HOSTS does not list."""
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == {"ok": True}
    assert client.get("/accounts/login/", HTTP_HOST="10.1.2.3:8000").status_code == 400
