"""Run the whole platform on loopback: web, Celery workers and beat, the SMTP sink, the DNS
sandbox and the inbound listener (bounces, complaints, `mailto:` unsubscribes)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from accounts.demo import DEMO_EMAIL, OPERATOR_EMAIL
from espsite.management.commands.seed_demo import demo_password

STOP_GRACE_SECONDS = 10
WEB_START_TIMEOUT_SECONDS = 60


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = field(default=None, repr=False)
    relay: threading.Thread | None = field(default=None, repr=False)

    def start(self, *, cwd: Path, env: dict[str, str], output_lock: threading.Lock) -> None:
        # A session of its own: Ctrl-C reaches runstack alone, which then stops the
        # children in order, and a child's own subprocesses can be killed as a group.
        self.process = subprocess.Popen(  # noqa: S603 - fixed argument lists only
            self.command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.relay = threading.Thread(target=self._relay, args=(output_lock,), daemon=True)
        self.relay.start()

    def _relay(self, output_lock: threading.Lock) -> None:
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            with output_lock:
                print(f"{self.name:<13}| {line}", flush=True)

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def _die_with_parent() -> None:
    """In the child, before exec: be sent SIGTERM if runstack itself dies (even by SIGKILL),
    so that no server outlives it holding its port."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _port_is_free(port: int) -> bool:
    # Checked first so that another server on the port is never taken for ours.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _accepts_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Command(BaseCommand):
    help = (
        "Start the web server, the Celery workers and beat, the SMTP sink, the DNS sandbox "
        "and the inbound listener; Ctrl-C stops all."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web port on 127.0.0.1")

    def handle(self, *args, port, **options):
        for name, busy_port in (
            ("web", port),
            ("SMTP sink", settings.SMTP_SINK_PORT),
            ("DNS sandbox", settings.DNS_SANDBOX_PORT),
            ("inbound listener", settings.MAILIN_PORT),
        ):
            if not _port_is_free(busy_port):
                raise CommandError(f"127.0.0.1:{busy_port} ({name}) is already in use.")
        var_dir = Path(settings.VAR_DIR)
        var_dir.mkdir(parents=True, exist_ok=True)
        children = self._children(port=port, var_dir=var_dir)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # DNS goes to the loopback sandbox unless resolvers were chosen explicitly.
        env.setdefault("DNS_RESOLVERS", f"127.0.0.1:{settings.DNS_SANDBOX_PORT}")
        output_lock = threading.Lock()

        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())

        failed = None
        try:
            for child in children:
                child.start(cwd=settings.BASE_DIR, env=env, output_lock=output_lock)
            failed = self._wait_for_web(port=port, children=children, stopping=stopping)
            if failed is None and not stopping.is_set():
                with output_lock:
                    self.stdout.write(self._banner(port=port, var_dir=var_dir))
            while failed is None and not stopping.is_set():
                failed = next((c for c in children if c.exit_code is not None), None)
                stopping.wait(0.5)
        finally:
            self._stop(children)
        if failed is not None:
            raise CommandError(
                f"{failed.name} exited unexpectedly with code {failed.exit_code}; "
                "stopped everything else."
            )

    def _children(self, *, port: int, var_dir: Path) -> list[Child]:
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        celery = [sys.executable, "-m", "celery", "-A", "espsite"]

        def worker(name: str, queues: str, concurrency: int) -> Child:
            options = ["-Q", queues, "-n", f"{name}@%h", "--concurrency", str(concurrency)]
            return Child(name, [*celery, "worker", *options, "-l", "info"])

        schedule = str(var_dir / "celerybeat-schedule")
        return [
            Child("web", [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"]),
            worker("bulk", "default,send,tracking", 2),
            worker("transactional", "transactional", 1),
            Child("beat", [*celery, "beat", "-l", "info", "--schedule", schedule]),
            Child("sink", [*manage, "smtp_sink", "--host", "127.0.0.1"]),
            Child("dns", [*manage, "dns_sandbox", "--host", "127.0.0.1"]),
            Child("mailin", [*manage, "mailin", "--host", "127.0.0.1"]),
        ]

    def _wait_for_web(
        self, *, port: int, children: list[Child], stopping: threading.Event
    ) -> Child | None:
        """Wait until the sign-in page, the sink and the inbound listener answer; return a
        child that died meanwhile."""
        url = f"http://127.0.0.1:{port}{reverse('accounts:login')}"
        deadline = time.monotonic() + WEB_START_TIMEOUT_SECONDS
        while not stopping.is_set():
            dead = next((c for c in children if c.exit_code is not None), None)
            if dead is not None:
                return dead
            try:
                with urllib.request.urlopen(url, timeout=2):
                    pass
                if _accepts_connections(settings.SMTP_SINK_PORT) and _accepts_connections(
                    settings.MAILIN_PORT
                ):
                    return None
                raise ConnectionRefusedError("the sink or the inbound listener is not up yet")
            except urllib.error.HTTPError as exc:
                self.stderr.write(f"{url} answers {exc.code}")
                return None
            except OSError:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"web did not answer at {url} within {WEB_START_TIMEOUT_SECONDS} s."
                    ) from None
                stopping.wait(0.5)
        return None

    def _banner(self, *, port: int, var_dir: Path) -> str:
        base = f"http://127.0.0.1:{port}"
        sink_port, password = settings.SMTP_SINK_PORT, demo_password()
        lines = [
            "",
            f"  ESP is running at {base}/",
            f"  Sign in:    {base}{reverse('accounts:login')}",
            f"              {DEMO_EMAIL} / {password}",
            f"  Operators:  {base}{reverse('admin:index')}",
            f"              {OPERATOR_EMAIL} / {password} (two-factor set-up at first sign-in)",
            f"  Mail:       SMTP sink on 127.0.0.1:{sink_port}, messages in {var_dir / 'outbox'}",
            f"  DNS:        sandbox on 127.0.0.1:{settings.DNS_SANDBOX_PORT}: sending domains "
            "under .example or .test verify; nothing is looked up off the machine",
            f"  Inbound:    listener on 127.0.0.1:{settings.MAILIN_PORT} for bounces, "
            "complaints and mailto: unsubscribes (return-path hosts, "
            f"{', '.join(settings.MAILIN_FBL_ADDRESSES)})",
        ]
        if (settings.EMAIL_HOST, settings.EMAIL_PORT) not in {
            ("127.0.0.1", sink_port),
            ("localhost", sink_port),
        }:
            lines.append(
                f"  Note:       system mail goes to {settings.EMAIL_HOST}:{settings.EMAIL_PORT}, "
                "not to the sink (EMAIL_HOST / EMAIL_PORT)."
            )
        lines += ["  Ctrl-C stops everything.", ""]
        return "\n".join(lines)

    def _stop(self, children: list[Child]) -> None:
        running = [c for c in children if c.process is not None and c.exit_code is None]
        for child in running:
            child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in running:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop in {STOP_GRACE_SECONDS} s; killing")
        # SIGKILL the whole group: also what a child started and left behind (pool
        # processes of a killed Celery worker).
        for child in children:
            if child.process is not None:
                child.signal_group(signal.SIGKILL)
                child.process.wait()
                child.relay.join(timeout=1)  # its last lines
