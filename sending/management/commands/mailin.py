"""The inbound listener: bounces, complaints and `mailto:` unsubscribes arrive here by SMTP."""

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sending.feedback.listener import COMMAND_TIMEOUT_SECONDS, mailin_start
from sending.selectors import return_path_host_list
from sending.smtpd import controller_serve

STOP_GRACE_SECONDS = 10


def postfix_domains() -> list[str]:
    """The return-path hosts of every sending domain, then the FBL addresses' domains."""
    hosts = return_path_host_list()
    fbl = sorted({a.strip().rpartition("@")[2].lower() for a in settings.MAILIN_FBL_ADDRESSES})
    return hosts + [domain for domain in fbl if domain and domain not in hosts]


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
        parser.add_argument(
            "--print-postfix-domains",
            action="store_true",
            help="print the domains this listener takes mail for as a Postfix lookup table "
            "(`<domain> OK` lines, for relay_domains; postmap it) and exit",
        )

    def handle(self, *args, host, port, timeout, print_postfix_domains, **options):
        if print_postfix_domains:
            for domain in postfix_domains():
                self.stdout.write(f"{domain} OK")
            return
        host = settings.MAILIN_HOST if host is None else host
        port = settings.MAILIN_PORT if port is None else port
        # aiosmtpd logs every SMTP command at INFO; one line per message is printed instead.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        try:
            controller = mailin_start(host=host, port=port, timeout=timeout, log=self.stdout.write)
        except (OSError, RuntimeError) as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc

        controller_serve(
            controller=controller,
            stop_grace_seconds=STOP_GRACE_SECONDS,
            ready=lambda: self.stdout.write(
                f"Inbound listener on {host}:{port} for the return-path hosts of sending "
                f"domains and {', '.join(settings.MAILIN_FBL_ADDRESSES)} "
                f"(at most {settings.MAILIN_MAX_MESSAGE_BYTES} bytes a message, "
                f"{settings.MAILIN_MAX_CONNECTIONS} connections, "
                f"{settings.MAILIN_MAX_CONNECTIONS_PER_PEER} from one address, "
                f"sessions of at most {settings.MAILIN_SESSION_SECONDS} s)"
            ),
        )
        # A message whose 250 was sent is already committed; one cut short at the stop is
        # retried by its sender.
        self.stdout.write("Inbound listener stopped")
