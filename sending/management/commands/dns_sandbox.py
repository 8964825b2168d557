import logging
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sending.dnsserver import DnsServer
from sending.sandbox import RESERVED_TLDS, sandbox_zone

REFRESH_SECONDS = 1
logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Serve the platform's DNS sandbox on loopback: the records of sending domains under "
        f"{', '.join(RESERVED_TLDS)}, NXDOMAIN for everything else (nothing is forwarded)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.DNS_SANDBOX_PORT)

    def handle(self, *args, host: str, port: int, **options) -> None:
        if not host.startswith("127.") and host != "::1":
            raise CommandError("The DNS sandbox only listens on loopback.")
        try:
            server = DnsServer(host=host, port=port).start()
        except OSError as error:
            raise CommandError(f"{host}:{port} is not free for the DNS sandbox: {error}") from None
        self.stdout.write(f"DNS sandbox on {server.address} (UDP and TCP)", ending="\n")
        try:
            while True:
                try:
                    server.zone = sandbox_zone()
                except Exception:  # keep answering from the last good zone
                    logger.exception("DNS sandbox: could not rebuild the zone")
                time.sleep(REFRESH_SECONDS)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
