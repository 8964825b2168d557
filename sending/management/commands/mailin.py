"""The inbound listener: bounces, complaints and `mailto:` unsubscribes arrive here by SMTP."""

import logging
import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sending.feedback.listener import COMMAND_TIMEOUT_SECONDS, mailin_start

STOP_GRACE_SECONDS = 10


class Command(BaseCommand):
    help = (
        "Run the inbound SMTP listener for the return-path hosts of sending domains and the "
        "FBL addresses; every accepted message is stored before 250 and processed by a task."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None, help="default: MAILIN_HOST")
        parser.add_argument("--port", type=int, default=None, help="default: MAILIN_PORT")
        parser.add_argument(
            "--timeout",
            type=float,
            default=COMMAND_TIMEOUT_SECONDS,
            help="seconds a client may stay silent before it is disconnected",
        )

    def handle(self, *args, host, port, timeout, **options):
        host = settings.MAILIN_HOST if host is None else host
        port = settings.MAILIN_PORT if port is None else port
        # aiosmtpd logs every SMTP command at INFO; one line per message is printed instead.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            controller = mailin_start(host=host, port=port, timeout=timeout, log=self.stdout.write)
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc

        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(
            f"Inbound listener on {host}:{port} for the return-path hosts of sending domains "
            f"and {', '.join(settings.MAILIN_FBL_ADDRESSES)} "
            f"(at most {settings.MAILIN_MAX_MESSAGE_BYTES} bytes a message, "
            f"{settings.MAILIN_MAX_CONNECTIONS} connections)"
        )
        try:
            stop.wait()
        finally:
            # A client that never hangs up must not keep the listener alive once told to
            # stop. A message whose 250 was sent is already committed; one cut short is
            # retried by its sender.
            stopper = threading.Thread(target=controller.stop, daemon=True)
            stopper.start()
            stopper.join(timeout=STOP_GRACE_SECONDS)
            if stopper.is_alive():
                os._exit(0)
        self.stdout.write("Inbound listener stopped")
