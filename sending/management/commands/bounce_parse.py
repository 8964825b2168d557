"""Parse raw bounce / complaint messages without acting on them: one JSON line per
recipient, for operators debugging what an MTA sent back. Reads files only: no database."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sending.feedback import report as r
from sending.feedback.parse import feedback_parse


def _messages(path: Path) -> list[tuple[str, bytes]]:
    """(label, raw) of each message in an .eml file or an mbox ("path#N", from 1)."""
    with path.open("rb") as handle:
        head = handle.read(5)
    if head != b"From ":
        return [(str(path), path.read_bytes())]
    box = mailbox.mbox(str(path), create=False)
    try:
        return [
            (f"{path}#{number}", box.get_bytes(key)) for number, key in enumerate(box.keys(), 1)
        ]
    finally:
        box.close()


def report_lines(label: str, report: r.FeedbackReport) -> list[dict]:
    """The JSON objects printed for one parsed message."""
    base = {"file": label, "kind": report.kind}
    is_bounce = report.kind == r.BOUNCE
    lines = [
        {
            **base,
            "recipient": item.address,
            "action": item.action if report.kind != r.COMPLAINT else None,
            "class": (item.bounce_class or None) if is_bounce else None,
            "status": item.status,
            "diagnostic": item.diagnostic,
            "remote_mta": item.remote_mta,
        }
        for item in report.recipients
    ]
    if not lines:
        lines = [
            {
                **base,
                "recipient": None,
                "action": None,
                "class": None,
                "status": "",
                "diagnostic": "",
                "remote_mta": "",
            }
        ]
    for line in lines:
        line["detector"] = report.detector
        if report.kind == r.COMPLAINT:
            line["feedback_type"] = report.feedback_type
        if report.original_message_id:
            line["original_message_id"] = report.original_message_id
        if report.verp_addresses:
            line["verp_addresses"] = list(report.verp_addresses)
    return lines


class Command(BaseCommand):
    help = (
        "Parse raw messages (.eml files or mbox files) the way the inbound listener would, "
        "without acting on them; prints one JSON line per recipient found."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")

    def handle(self, *args, files: list[str], **options):
        failures = 0
        for name in files:
            path = Path(name)
            try:
                messages = _messages(path)
            except (OSError, mailbox.Error) as error:
                failures += 1
                self.stderr.write(f"{name}: cannot read: {error.strerror or error}")
                continue
            for label, raw in messages:
                for line in report_lines(label, feedback_parse(raw)):
                    self.stdout.write(json.dumps(line, ensure_ascii=False))
        if failures:
            raise CommandError(f"{failures} of {len(files)} file(s) could not be read.")
