"""`manage.py bounce_parse FILE...`: one JSON line per recipient, from .eml and mbox files,
without touching the database (these tests have no database access: a query would fail)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[3]

DSN = """From: MAILER-DAEMON@mx.example.org
To: bounces+3.mfrggzdfmztwq2lk@bounces.brand.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Sorry.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; kay@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; 550 5.1.1 <kay@example.org>: User unknown

Final-Recipient: rfc822; lou@example.org
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--B--
"""
COMPLAINT = """From: fbl@isp.example
To: fbl@brand.example
Subject: report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: message/feedback-report

Feedback-Type: abuse
Original-Rcpt-To: max@example.com

--F--
"""
HUMAN = "From: Ned <ned@example.com>\nTo: bounces@brand.example\nSubject: hi\n\nhello\n"


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.replace("\n", "\r\n").encode())
    return path


def run(*files) -> tuple[list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("bounce_parse", *[str(f) for f in files], stdout=out, stderr=err)
    return [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_one_line_per_recipient_with_the_fields_operators_need(tmp_path):
    path = write(tmp_path / "dsn.eml", DSN)

    lines, _ = run(path)

    assert [
        {
            key: line[key]
            for key in ("file", "kind", "recipient", "class", "status", "diagnostic", "remote_mta")
        }
        for line in lines
    ] == [
        {
            "file": str(path),
            "kind": "bounce",
            "recipient": "kay@example.org",
            "class": "hard",
            "status": "5.1.1",
            "diagnostic": "550 5.1.1 <kay@example.org>: User unknown",
            "remote_mta": "mail.example.org",
        },
        {
            "file": str(path),
            "kind": "bounce",
            "recipient": "lou@example.org",
            "class": "soft",
            "status": "4.2.2",
            "diagnostic": "452 4.2.2 Mailbox full",
            "remote_mta": "",
        },
    ]
    assert [line["action"] for line in lines] == ["failed", "delayed"]


def test_a_message_with_no_recipient_prints_one_line_with_a_null_recipient(tmp_path):
    lines, _ = run(write(tmp_path / "human.eml", HUMAN))

    assert len(lines) == 1
    assert (lines[0]["kind"], lines[0]["recipient"], lines[0]["class"]) == ("unknown", None, None)


def test_a_complaint_has_no_class(tmp_path):
    lines, _ = run(write(tmp_path / "arf.eml", COMPLAINT))

    assert (lines[0]["kind"], lines[0]["recipient"], lines[0]["class"]) == (
        "complaint",
        "max@example.com",
        None,
    )
    assert lines[0]["feedback_type"] == "abuse"


def test_an_mbox_is_read_message_by_message(tmp_path):
    mbox = tmp_path / "box.mbox"
    mbox.write_text(
        "From MAILER-DAEMON Mon Nov  2 10:00:00 2026\n" + DSN + "\n"
        "From ned@example.com Mon Nov  2 10:05:00 2026\n" + HUMAN + "\n"
    )

    lines, _ = run(mbox)

    assert [(line["file"], line["recipient"]) for line in lines] == [
        (f"{mbox}#1", "kay@example.org"),
        (f"{mbox}#1", "lou@example.org"),
        (f"{mbox}#2", None),
    ]


def test_a_missing_file_is_reported_and_the_others_still_printed(tmp_path):
    good = write(tmp_path / "dsn.eml", DSN)
    missing = tmp_path / "missing.eml"
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match="1 of 2"):
        call_command("bounce_parse", str(missing), str(good), stdout=out, stderr=err)

    assert f"{missing}: cannot read" in err.getvalue()
    assert [json.loads(line)["recipient"] for line in out.getvalue().splitlines()] == [
        "kay@example.org",
        "lou@example.org",
    ]


def test_the_command_line_prints_json_lines_and_fails_on_an_unreadable_file(tmp_path):
    good = write(tmp_path / "dsn.eml", DSN)
    directory = tmp_path / "a-directory.eml"
    directory.mkdir()

    done = subprocess.run(
        [sys.executable, "manage.py", "bounce_parse", str(good), str(directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert [json.loads(line)["recipient"] for line in done.stdout.splitlines()] == [
        "kay@example.org",
        "lou@example.org",
    ]
    assert f"{directory}: cannot read" in done.stderr
