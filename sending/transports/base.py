"""The one small interface every way out implements: hand over envelopes, get one result
per envelope. The pipeline (sending/pipeline.py) never knows which transport it talks to.

    transport = transport_for(pool)            # sending/transports/__init__.py
    results = transport.send_many(envelopes)   # one Result per Envelope, same delivery ids

A transport keeps its connections between calls (one instance per worker process) and
never raises for a recipient's fate: refusals, timeouts and dropped connections are
Results. It raises only for a fault of its own configuration (TransportConfigError).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Envelope:
    """One message to one recipient, ready for the wire."""

    delivery_id: int
    mail_from: str  # the VERP return path
    recipient: str
    message: bytes  # serialised with CRLF, DKIM-signed
    source_address: str = ""  # the sending IP to bind (mx), blank: any
    message_id: str = ""  # the Message-ID header's value, kept on the delivery
    # What the destination provider takes from one IP (traffic shaping): at most this many
    # sessions to one destination in this batch, this many messages a session (0: the
    # transport's own defaults). Only a transport that talks to the MX itself applies them.
    max_sessions: int = 0
    messages_per_session: int = 0


@dataclass(frozen=True)
class Result:
    """What became of one envelope.

    state: "sent" (2xx after DATA), "deferred" (4xx, connection or timeout before DATA was
    accepted), "bounced" (5xx), "failed" (will never go: bad address, no SMTPUTF8, null MX
    handled as bounced), "unknown" (the connection broke after the final dot, before the
    reply: it may have arrived). bounce_class for bounced/failed: hard | soft | block.
    """

    delivery_id: int
    state: str
    smtp_code: int | None = None
    enhanced_code: str = ""
    response: str = ""
    remote_host: str = ""
    bounce_class: str = ""


class TransportConfigError(Exception):
    """The transport cannot work as configured (bad credentials, unknown backend, ...)."""


class Transport(Protocol):
    name: str

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Result]: ...

    def close(self) -> None: ...
