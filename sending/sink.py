"""The local mail sink's storage: one .eml file per message, its envelope in two headers.

The file is the DATA exactly as received, preceded by `X-Sink-Envelope-From` and
`X-Sink-Envelope-To` lines, so any mail client opens it and a test can read who the
message was really sent to (the envelope, not the To: header).
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

ENVELOPE_FROM_HEADER = "X-Sink-Envelope-From"
ENVELOPE_TO_HEADER = "X-Sink-Envelope-To"


def _header_value(value: str) -> str:
    # Envelope addresses come from an SMTP parser and hold no line breaks; this keeps a
    # malformed one from forging further header lines all the same.
    return " ".join(value.split())


def sink_store(*, directory: Path, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> Path:
    """Write one received message into directory and return the new file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    received_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = directory / f"{received_at}-{uuid.uuid4().hex[:12]}.eml"
    envelope = (
        f"{ENVELOPE_FROM_HEADER}: {_header_value(mail_from) or '<>'}\r\n"
        f"{ENVELOPE_TO_HEADER}: {', '.join(_header_value(rcpt) for rcpt in rcpt_tos)}\r\n"
    )
    # Written under a dot-name and renamed, so a reader never sees half a message.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(envelope.encode() + data)
    partial.replace(path)
    return path
