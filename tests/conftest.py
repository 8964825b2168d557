"""Fixtures on real parts: PostgreSQL, Redis, an SMTP server on loopback."""

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from django.test import Client

from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory, WorkspaceFactory


def _xdist_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def redis_test_url() -> str:
    """Each xdist worker gets a Redis database of its own (11, 12, …), flushed freely."""
    return f"redis://127.0.0.1:6379/{11 + _xdist_index()}"


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # A test database per pytest process: several runs may share one PostgreSQL server.
    database = settings.DATABASES["default"]
    database.setdefault("TEST", {})["NAME"] = f"test_{database['NAME']}_{os.getpid()}"
    # Hashing passwords with a million PBKDF2 rounds would dominate the suite's time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    url = redis_test_url()
    settings.REDIS_URL = url
    settings.CACHES["default"]["LOCATION"] = url
    settings.CELERY_BROKER_URL = url
    settings.CELERY_RESULT_BACKEND = url

    from espsite.celery import app

    app.conf.broker_url = url
    app.conf.result_backend = url
    # Tasks run inline in tests; the Celery tests turn this off to use a real worker.
    app.conf.task_always_eager = True
    settings.CELERY_TASK_ALWAYS_EAGER = True


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _real_services_answer() -> None:
    """The suite runs on real PostgreSQL and Redis: a missing one fails, never skips."""
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not _answers("127.0.0.1", port)
    ]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not answering on 127.0.0.1; run `make services`.",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    import redis

    redis.Redis.from_url(redis_test_url()).flushdb()


@pytest.fixture(autouse=True)
def private_storage(settings, tmp_path):
    """Files of every test go to its own folder, never to the developer's var/media."""
    location = tmp_path / "storage"
    location.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    return location


@pytest.fixture
def password() -> str:
    return TEST_PASSWORD


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def workspace(db):
    return WorkspaceFactory()


@pytest.fixture
def member_client(db) -> Callable[..., Client]:
    """A signed-in client for a new user with `role` in `workspace`."""

    def make(workspace, role: str = "owner", **user_fields) -> Client:
        membership = MembershipFactory(
            workspace=workspace, role=role, user=UserFactory(**user_fields)
        )
        client = Client()
        client.force_login(membership.user)
        client.user = membership.user
        client.membership = membership
        return client

    return make


@pytest.fixture
def operator_client(db) -> Client:
    """A staff superuser signed in with a verified authenticator, as the admin requires."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    operator = UserFactory(is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=operator, name="phone", confirmed=True)
    client = Client()
    client.force_login(operator)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    client.user = operator
    return client


@dataclass
class SmtpSink:
    """A real SMTP server on loopback that keeps what it receives."""

    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.received.set()
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [
            message
            for message, (_, rcpts) in zip(self.messages, self.envelopes, strict=True)
            if address in rcpts
        ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_sink(settings) -> Iterator[SmtpSink]:
    sink = SmtpSink(host="127.0.0.1", port=_free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def free_port() -> Callable[[], int]:
    return _free_port


@pytest.fixture
def celery_worker_process(settings, tmp_path):
    """Start real Celery worker processes on the test database and this test's Redis.

    For tests marked django_db(transaction=True): the worker sees committed rows only. Files
    go to a storage folder shared by the test and the worker. Tasks stop running inline.
    """
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.db import connection

    from espsite.celery import app

    # Before anything reads the Celery app's configuration: its first read applies
    # settings.CELERY_TASK_ALWAYS_EAGER (True in tests), which would keep tasks inline.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    media = tmp_path / "media"
    media.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media)},
        },
    }
    database = connection.settings_dict
    url = redis_test_url()
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
        "CELERY_RESULT_BACKEND": url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "MEDIA_ROOT": str(media),
    }
    processes = []

    def start(queues: str = "default,transactional", name: str = "test") -> subprocess.Popen:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "espsite",
                "worker",
                "-Q",
                queues,
                "--pool",
                "solo",
                "-n",
                f"{name}{len(processes)}@%h",
                "-l",
                "warning",
            ],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
        )
        processes.append(process)
        return process

    app.conf.task_always_eager = False
    try:
        yield start
    finally:
        app.conf.task_always_eager = True
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        time.sleep(0)


@pytest.fixture(scope="session", autouse=True)
def _tracking_spool(django_db_setup, tmp_path_factory):
    """A tracking spool of this test process's own (a spool found in a shared directory is
    adopted into whichever database its finder uses); its flusher thread holds a database
    connection: stopped before the test database is dropped."""
    from django.conf import settings

    settings.TRACKING_SPOOL_DIR = tmp_path_factory.mktemp("tracking-spool")
    yield
    from tracking.spool import spool_stop

    spool_stop(timeout=30)


def _is_transactional(request) -> bool:
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and (marker.kwargs.get("transaction") or "transaction" in marker.args):
        return True
    return bool({"transactional_db", "live_server"} & set(request.fixturenames))


@pytest.fixture(autouse=True)
def _tracking_events_emptied(request, django_db_blocker):
    """Transactional tests are emptied by a flush of the managed tables: the event table
    (unmanaged: partitioned by its migration's SQL) is emptied here."""
    yield
    if _is_transactional(request):
        from django.db import connection

        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE tracking_event")
