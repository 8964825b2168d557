"""A catch-all SMTP server for development: every message is accepted and kept as a file."""

import ipaddress
import logging
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from sending.sink import sink_store
from sending.smtpd import controller_serve


class SinkHandler:
    """aiosmtpd handler: accept every sender and recipient, store each message."""

    def __init__(self, *, directory: Path, stdout: OutputWrapper) -> None:
        self.directory = directory
        self.stdout = stdout

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        path = sink_store(
            directory=self.directory,
            mail_from=envelope.mail_from or "",
            rcpt_tos=envelope.rcpt_tos,
            data=envelope.content,
        )
        subject = BytesHeaderParser(policy=default_policy).parsebytes(envelope.content)["Subject"]
        # Handlers all run on the controller's one event-loop thread: no lock needed.
        self.stdout.write(
            f"{envelope.mail_from or '<>'} -> {', '.join(envelope.rcpt_tos)} "
            f"{str(subject or '')!r} {path}"
        )
        return "250 Message accepted for delivery"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


STOP_GRACE_SECONDS = 5


class Command(BaseCommand):
    help = "Run a catch-all SMTP server on loopback that stores every message as an .eml file."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=None, help="default: SMTP_SINK_PORT")
        parser.add_argument("--dir", default=None, help="default: VAR_DIR/outbox")
        parser.add_argument(
            "--allow-public",
            action="store_true",
            help="allow a --host other than loopback (the sink accepts mail from anyone)",
        )

    def handle(self, *args, host, port, dir, allow_public, **options):
        if not _is_loopback(host) and not allow_public:
            raise CommandError(
                f"--host {host} is not loopback; the sink accepts anything from anyone. "
                "Add --allow-public if that is really meant."
            )
        port = settings.SMTP_SINK_PORT if port is None else port
        directory = Path(dir) if dir else Path(settings.VAR_DIR) / "outbox"
        directory.mkdir(parents=True, exist_ok=True)

        # aiosmtpd logs every SMTP command at INFO; one line per message is printed instead.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        handler = SinkHandler(directory=directory.resolve(), stdout=self.stdout)
        controller = Controller(handler, hostname=host, port=port, enable_SMTPUTF8=True)
        try:
            controller.start()
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc

        controller_serve(
            controller=controller,
            stop_grace_seconds=STOP_GRACE_SECONDS,
            ready=lambda: self.stdout.write(
                f"SMTP sink listening on {host}:{port}, storing mail in {directory}"
            ),
        )
        self.stdout.write("SMTP sink stopped")
