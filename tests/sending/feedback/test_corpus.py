"""The parser against a corpus of bounces, complaints and auto-replies shaped like those of
real MTAs and mailbox providers (tests/sending/feedback/corpus/, invented addresses).

expected.json holds, per file, what a careful reader of the message concludes:

    kind         bounce | complaint | auto_reply | delivered | unknown
    recipients   for a bounce, every failed or delayed recipient with its class and status
                 (and action); for a delivered report, the delivered recipients; for a
                 complaint, the original recipient; none for an auto-reply
    feedback_type  ARF's Feedback-Type, for complaints ("abuse" for a JMRP report)
    note         why a doubtful case was read the way it was

Conventions of the expectations:
- class: hard = the address or its domain does not exist (user unknown, no such domain,
  disabled account); soft = mailbox full, too big, temporary or delayed, timeouts after
  retries; block = policy, spam/content, blocklist, reputation or rate limit,
  authentication, our sender refused (a block reason wins over the code, and a delayed
  rate limit is block); unknown = permanent, reason not stated.
- status: the enhanced code the message states for the recipient (Status field of a DSN,
  else the code in the remote's reply); when that is a generic x.0.0 or x.y.0 and the
  remote's reply carries a more specific code, the specific one; "" when none is given.
- action: failed, delayed or delivered (RFC 3464's relayed/expanded count as delivered).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sending.feedback.parse import feedback_parse

CORPUS = Path(__file__).parent / "corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))

KINDS = {"bounce", "complaint", "auto_reply", "delivered", "unknown"}
CLASSES = {"hard", "soft", "block", "unknown"}

# The families the issue names, by file-name prefix: each must have a bounce or complaint.
FAMILIES = (
    "postfix-",
    "exim-",
    "sendmail-",
    "qmail-",
    "exchange-",
    "o365-",
    "outlook-",
    "gmail-",
    "yahoo-",
    "aol-",
    "domino-",
    "groupwise-",
    "arf-yahoo-",
    "arf-aol-",
    "arf-comcast-",
    "arf-generic-",
    "jmrp-",
)


def _parse(name: str):
    return feedback_parse((CORPUS / name).read_bytes())


def _address(address: str | None) -> str:
    return (address or "").strip().lower()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_message(name: str) -> None:
    expected = EXPECTED[name]
    report = _parse(name)

    assert report.kind == expected["kind"], f"{name}: kind {report.kind!r}, notes {report.notes}"
    kind = expected["kind"]
    if kind == "bounce":
        got = {
            (_address(r.address), r.bounce_class, r.status, r.action)
            for r in report.recipients
            if r.action in ("failed", "delayed")
        }
        want = {
            (_address(r["address"]), r["class"], r["status"], r["action"])
            for r in expected["recipients"]
        }
        assert got == want, f"{name}: {report.recipients}"
    elif kind == "delivered":
        got = {(_address(r.address), r.status, r.action) for r in report.recipients}
        want = {(_address(r["address"]), r["status"], r["action"]) for r in expected["recipients"]}
        assert got == want, f"{name}: {report.recipients}"
    elif kind == "complaint":
        assert {_address(r.address) for r in report.recipients} == {
            _address(r["address"]) for r in expected["recipients"]
        }, f"{name}: {report.recipients}"
        assert report.feedback_type == expected["feedback_type"]
    elif kind == "auto_reply":
        assert report.recipients == ()
    else:
        assert not [r for r in report.recipients if r.action in ("failed", "delayed")], name


def test_complaints_name_our_original() -> None:
    """Every complaint quotes our message: the parser reports its Message-ID and our VERP
    addresses (Return-Path, List-Unsubscribe mailto), which name the delivery."""
    for name, expected in sorted(EXPECTED.items()):
        if expected["kind"] != "complaint":
            continue
        report = _parse(name)
        raw = (CORPUS / name).read_text(encoding="utf-8", errors="replace")
        assert report.original_message_id, name
        assert report.original_message_id.strip("<>") in raw, name
        assert any(a.lower().startswith("bounces+") for a in report.verp_addresses), name


def test_corpus_expectations_are_well_formed() -> None:
    for name, expected in EXPECTED.items():
        assert expected["kind"] in KINDS, name
        recipients = expected["recipients"]
        if expected["kind"] == "bounce":
            assert recipients, name
            for r in recipients:
                assert r["class"] in CLASSES, name
                assert r["action"] in ("failed", "delayed"), name
                assert r["address"] == r["address"].strip(), name
                assert "@" in r["address"], name
        elif expected["kind"] == "complaint":
            assert len(recipients) == 1, name
            assert recipients[0]["class"] == "", name
            assert expected["feedback_type"], name
        elif expected["kind"] in ("auto_reply", "unknown"):
            assert recipients == [], name


def test_corpus_size_and_coverage() -> None:
    """At least 40 bounces and complaints, every MTA family the issue names, and the hard
    shapes: delays, several recipients, delivered reports, auto-replies of every kind."""
    kinds = [e["kind"] for e in EXPECTED.values()]
    assert kinds.count("bounce") + kinds.count("complaint") >= 40
    for family in FAMILIES:
        assert any(
            name.startswith(family) and e["kind"] in ("bounce", "complaint")
            for name, e in EXPECTED.items()
        ), family
    assert kinds.count("auto_reply") >= 7
    assert "delivered" in kinds
    recipients = [r for e in EXPECTED.values() for r in e["recipients"]]
    assert {r["class"] for r in recipients if r["class"]} == CLASSES
    assert any(r["action"] == "delayed" for r in recipients)
    assert any(len(e["recipients"]) > 1 for e in EXPECTED.values())
    feedback_types = {e.get("feedback_type") for e in EXPECTED.values()}
    assert {"abuse", "fraud", "not-spam"} <= feedback_types


def test_every_message_has_an_expectation_and_back() -> None:
    files = {p.name for p in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED)
    assert not [p.name for p in CORPUS.iterdir() if p.suffix not in (".eml", ".json")]
