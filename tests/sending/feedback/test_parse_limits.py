"""feedback_parse on hostile input: anyone can mail the listener, so each message must be
read in well under a second whatever its shape (long lines, thousands of addresses or
recipient groups, deep nesting, huge parts), and no pattern of the parser may backtrack
more than linearly. Times are measured with time.perf_counter; the limits leave room for
a loaded 2-core machine (before the fixes, most of these cases took 10 s to minutes)."""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sending import classify
from sending.feedback import arf, autoreply, dsn, fields, mime, original, parse, plaintext, ses
from sending.feedback import report as r
from sending.feedback.parse import feedback_parse

CORPUS = Path(__file__).parent / "corpus"
LIMIT_SECONDS = 2.0
KINDS = {r.BOUNCE, r.COMPLAINT, r.AUTO_REPLY, r.DELIVERED, r.UNKNOWN}


def bounce(body: str, *, headers: str = "", ctype: str = "text/plain; charset=utf-8") -> bytes:
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: bounces+2kq9@bounces.brand.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"{headers}MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n\r\n" + body.replace("\n", "\r\n")
    ).encode("utf-8")


def nested_multiparts(depth: int) -> bytes:
    body = "inner@example.org: 550 5.1.1 no such user\r\n"
    for level in range(depth):
        body = (
            f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'
            f"Content-Type: text/plain\r\n\r\nx{level}@example.org: 550 5.1.1 unknown\r\n"
            f"--b{level}\r\n{body}\r\n--b{level}--\r\n"
        )
    head = "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail\r\n"
    return (head + "MIME-Version: 1.0\r\n" + body).encode()


def attachment_10mb() -> bytes:
    data = base64.encodebytes(b"\x00\xff" * (5 * 1024 * 1024)).decode()
    return bounce(
        "--B\nContent-Type: text/plain\n\nalice@example.org: 550 5.1.1 user unknown\n\n"
        "--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        f"{data}\n--B--\n",
        ctype='multipart/mixed; boundary="B"',
    )


def dsn_groups(count: int) -> bytes:
    groups = "\n".join(
        f"Final-Recipient: rfc822; user{i}@example.org\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 user{i}@example.org unknown\n"
        for i in range(count)
    )
    return bounce(
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        f"{groups}\n--B--\n",
        ctype='multipart/report; report-type=delivery-status; boundary="B"',
    )


def distinct_replies(count: int) -> bytes:
    """Recipients each with a different long reply: every one is classified."""
    rnd = random.Random(7)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    lines = [
        f"<user{i}@example.org>: 550 " + " ".join(rnd.choice(words) for _ in range(160))
        for i in range(count)
    ]
    return bounce("The following addresses failed:\n" + "\n".join(lines) + "\n")


ADVERSARIAL: dict[str, Callable[[], bytes]] = {
    "100 KB line of spaces": lambda: bounce("failed:\n" + " " * 100_000 + "\n"),
    "100 KB of non-space characters": lambda: bounce("x" * 100_000 + "\n"),
    "100 KB of 'a@'": lambda: bounce("a@" * 50_000 + "\n"),
    "10,000 addresses on one line": lambda: bounce(
        "The following addresses failed:\n"
        + " ".join(f"user{i}@example.org" for i in range(10_000))
        + " 550 5.1.1 unknown\n"
    ),
    "10,000 recipient lines": lambda: bounce(
        "The following addresses failed:\n"
        + "\n".join(f"<user{i}@example.org>: 550 5.1.1 unknown" for i in range(10_000))
    ),
    "50,000 lines of '> '": lambda: bounce("delivery failed\n" + "> \n" * 50_000),
    "deeply nested multiparts": lambda: nested_multiparts(60),
    "very deeply nested multiparts": lambda: nested_multiparts(400),
    "10 MB attachment": attachment_10mb,
    "DSN with 10,000 recipient groups": lambda: dsn_groups(10_000),
    "1 MB header": lambda: bounce(
        "alice@example.org: 550 5.1.1 unknown\n", headers="X-Long: " + "a@b " * 250_000 + "\r\n"
    ),
    "1 MB Subject and To": lambda: bounce(
        "failed\n",
        headers="X-Failed-Recipients: " + "x@example.org, " * 60_000 + "\r\n",
    ).replace(b"Subject: ", b"Subject: " + b"x@y.org undeliverable " * 40_000, 1),
    "folded Diagnostic-Code of 20,000 lines": lambda: bounce(
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        "Final-Recipient: rfc822; alice@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 unknown\n" + " more words\n" * 20_000 + "\n--B--\n",
        ctype='multipart/report; report-type=delivery-status; boundary="B"',
    ),
    "expanded-from run": lambda: bounce(
        "<" + "a" * 50_000 + "@" + "b" * 50_000 + " (expanded from\n"
    ),
    "100 KB of dashes": lambda: bounce("-" * 100_000 + "\n"),
    "100 KB of dots and letters": lambda: bounce("host " + "a." * 50_000 + "\n"),
    "unclosed HTML tags": lambda: bounce("<style " * 20_000 + "<a " * 20_000, ctype="text/html"),
    "unclosed mailto links": lambda: bounce(
        "<a href=mailto:abc@example.org " * 8_000, ctype="text/html"
    ),
    "SES JSON without closing braces": lambda: bounce(
        '{"notificationType":"Bounce",' + '"emailAddress":"a@example.org",' * 5_000
    ),
    "150 recipients with distinct long replies": lambda: distinct_replies(150),
    "one address on 30,000 lines": lambda: bounce(
        "failed\n" + "alice@example.org 550 x\n" * 30_000
    ),
}


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    """Lazy imports (flufl.bounce) are not the parser's time."""
    feedback_parse(bounce("failed\nalice@example.org\n"))


def _timed(raw: bytes) -> tuple[r.FeedbackReport, float]:
    started = time.perf_counter()
    report = feedback_parse(raw)
    return report, time.perf_counter() - started


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_input_is_parsed_fast(name: str) -> None:
    report, elapsed = _timed(ADVERSARIAL[name]())
    assert elapsed < LIMIT_SECONDS, f"{name}: {elapsed:.2f} s"
    assert report.kind in KINDS
    assert not any(note.startswith("parser error") for note in report.notes), report.notes
    assert len(report.recipients) <= plaintext.MAX_FINDINGS


def test_many_addresses_on_one_line_are_capped_at_the_first_recipients() -> None:
    report, _ = _timed(ADVERSARIAL["10,000 recipient lines"]())
    addresses = [item.address for item in report.recipients]
    assert len(addresses) == plaintext.MAX_FINDINGS
    assert addresses[:2] == ["user0@example.org", "user1@example.org"]
    assert report.recipients[0].bounce_class == "hard"


def test_a_dsn_with_thousands_of_groups_keeps_the_first_and_says_so() -> None:
    report, _ = _timed(dsn_groups(10_000))
    assert report.kind == r.BOUNCE
    assert len(report.recipients) == plaintext.MAX_FINDINGS
    assert report.recipients[0].address == "user0@example.org"
    assert report.recipients[0].status == "5.1.1"
    assert any("first 100 recipients" in note for note in report.notes)


def test_the_recipient_next_to_a_huge_attachment_is_still_read() -> None:
    report, _ = _timed(attachment_10mb())
    assert [item.address for item in report.recipients] == ["alice@example.org"]
    assert report.recipients[0].bounce_class == "hard"


def test_a_line_of_blanks_does_not_hide_the_quoted_original_marker() -> None:
    """The marker pattern is unambiguous but still finds its indented, dashed forms."""
    text = " " * 5000 + "\n  ----- Original message follows -----\nTo: x@example.org\n"
    report, quoted = plaintext.split_original(text)
    assert report == " " * 5000 + "\n"
    assert quoted.startswith("  ----- Original message follows")
    assert plaintext.split_original("> >> === returned mail follows\nx")[1].startswith("> >>")


def test_expansions_are_still_resolved() -> None:
    text = "<bob@mail.example.org> (expanded from <alice@example.org>): user unknown"
    assert plaintext.expansions_resolved(text) == "<alice@example.org>: user unknown"
    run = "x" * 20_000 + " (expanded from <alice@example.org>)"
    assert plaintext.expansions_resolved(run) == run  # no address before it: left alone


def test_bounded_cuts_long_lines_and_long_texts() -> None:
    text = "a" * (mime.MAX_LINE_CHARS + 10) + "\nshort\n"
    assert mime.bounded(text) == "a" * mime.MAX_LINE_CHARS + "\nshort\n"
    assert len(mime.bounded("b\n" * mime.MAX_TEXT_CHARS)) == mime.MAX_TEXT_CHARS


# --- every pattern of the parser, against inputs that make backtracking explode ---------

MODULES = (plaintext, parse, mime, dsn, arf, autoreply, fields, original, ses, classify)
UNITS = (
    " ", "\t", "\n", " \n", "a", "a@", "a.", "-", "a-", ">", "> ", "<", "<a ", "=", "#",
    "(", '"', "{", "1.", "550 ", "5.1.1 ", "x@y.", "a@b.co ", "<a@b.co>", "host a.",
    "exceed", "recip", "mailbox ", '{"emailAddress":"a", ', "<a href=mailto:abc ",
)  # fmt: skip
PATTERN_CHARS = 16_000
PATTERN_SECONDS = 0.5


def _patterns() -> list[tuple[str, re.Pattern]]:
    found = []
    for module in MODULES:
        for name, value in vars(module).items():
            values = value if isinstance(value, list | tuple) else [value]
            for index, item in enumerate(values):
                regex = getattr(item, "_regex", item)  # a classify Rule holds its pattern
                if isinstance(regex, re.Pattern):
                    label = f"[{getattr(item, 'name', index)}]" if len(values) > 1 else ""
                    found.append((f"{module.__name__}.{name}{label}", regex))
    return found


def _words(regex: re.Pattern) -> list[str]:
    """A few words of the pattern, repeated: what makes a keyword-led scan revisit text."""
    words = sorted(set(re.findall(r"[a-z]{4,}", regex.pattern.lower())))
    return [f"{word}{tail}" for word in words[:: max(1, len(words) // 6)][:6] for tail in (" ", "")]


PATTERNS = _patterns()


def test_the_pattern_generator_finds_the_parsers_patterns() -> None:
    names = {name for name, _ in PATTERNS}
    assert "sending.feedback.plaintext._ORIGINAL_MARKER" in names
    assert "sending.feedback.plaintext._EXPANDED" in names
    assert "sending.classify.RULES[mailbox full]" in names
    assert len(PATTERNS) > 60


@pytest.mark.parametrize(("name", "regex"), PATTERNS, ids=[name for name, _ in PATTERNS])
def test_no_pattern_backtracks_more_than_linearly(name: str, regex: re.Pattern) -> None:
    """A linear scan of PATTERN_CHARS takes milliseconds (the slowest rule of classify
    ~0.1 s); a quadratic one takes seconds (the old _ORIGINAL_MARKER on blanks: 1.3 s)."""
    for unit in (*UNITS, *_words(regex)):
        # ending on a character no pattern expects: a match that fails at the very end
        text = (unit * (PATTERN_CHARS // len(unit) + 1))[:PATTERN_CHARS] + "\x00"
        started = time.perf_counter()
        for _ in regex.finditer(text):
            pass
        elapsed = time.perf_counter() - started
        assert elapsed < PATTERN_SECONDS, f"{name} on {unit!r} * n: {elapsed:.2f} s"


# --- fuzzing: corpus messages, mutated -------------------------------------------------

HOSTILE_CHUNKS = (
    b" " * 20_000, b"a@" * 10_000, b"x" * 30_000, b"> \r\n" * 5_000, b"-" * 20_000,
    b"<a " * 5_000, b"user@example.org " * 2_000, b"550 5.1.1 " * 3_000, b"\r\n" * 20_000,
)  # fmt: skip


def _mutated(raw: bytes, rnd: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rnd.randint(1, 4)):
        at = rnd.randrange(len(data) + 1)
        choice = rnd.randrange(6)
        if choice == 0:  # delete a range
            del data[at : at + rnd.randint(1, 2_000)]
        elif choice == 1:  # repeat a range
            data[at:at] = bytes(data[at : at + rnd.randint(1, 200)]) * rnd.randint(2, 300)
        elif choice == 2:  # random bytes
            data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 200)))
        elif choice == 3:  # a hostile chunk
            data[at:at] = rnd.choice(HOSTILE_CHUNKS)
        elif choice == 4:  # flip bytes
            for _ in range(rnd.randint(1, 50)):
                if data:
                    data[rnd.randrange(len(data))] = rnd.randrange(256)
        else:  # truncate
            del data[at:]
    return bytes(data)


def test_300_mutations_of_corpus_messages_parse_without_error_in_under_a_second() -> None:
    rnd = random.Random(20261129)
    messages = sorted(CORPUS.glob("*.eml"))
    assert messages
    slow = []
    for number in range(300):
        path = rnd.choice(messages)
        report, elapsed = _timed(_mutated(path.read_bytes(), rnd))
        assert report.kind in KINDS
        assert not any(note.startswith("parser error") for note in report.notes), (
            number,
            path.name,
            report.notes,
        )
        if elapsed >= 1.0:
            slow.append((number, path.name, round(elapsed, 2)))
    assert not slow
