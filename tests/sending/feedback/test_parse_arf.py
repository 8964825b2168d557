"""feedback_parse on complaints: ARF reports (RFC 5965) in the shapes feedback loops send,
and Microsoft's JMRP reports."""

import pytest

from sending.feedback import report as r
from sending.feedback.parse import feedback_parse

VERP = "bounces+7pq.gezdgnbvgy3tqojq@bounces.brand.example"
UNSUB = "unsubscribe+7pq.mfrggzdfmztwq2lk@bounces.brand.example"


def _crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\n", "\r\n").encode("utf-8")


def original(to: str = "Bea Reader <bea@example.com>") -> str:
    return f"""Return-Path: <{VERP}>
From: Brand News <news@brand.example>
To: {to}
Subject: Weekly deals
Message-ID: <7pq.1122@brand.example>
List-Unsubscribe: <mailto:{UNSUB}>, <https://brand.example/u/7pq>
Errors-To: {VERP}
Content-Type: text/plain

Deals!
"""


def arf(
    feedback: str, *, original_part: str | None = None, content_type: str = "message/rfc822"
) -> bytes:
    original_part = original() if original_part is None else original_part
    return _crlf(
        f"""From: Feedback Loop <fbl@isp.example>
To: fbl@brand.example
Subject: FW: Weekly deals
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="R"

--R
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.10.

--R
Content-Type: message/feedback-report

{feedback.strip()}

--R
Content-Type: {content_type}

{original_part}
--R--
"""
    )


def test_an_arf_report_gives_type_recipient_message_id_and_our_addresses():
    report = feedback_parse(
        arf(
            """
Feedback-Type: abuse
User-Agent: SomeISP-FBL/1.0
Version: 1
Original-Mail-From: <bounces+7pq.gezdgnbvgy3tqojq@bounces.brand.example>
Original-Rcpt-To: <bea@example.com>
Arrival-Date: Mon, 2 Nov 2026 10:00:00 +0000
Source-IP: 192.0.2.10
"""
        )
    )

    assert (report.kind, report.detector, report.feedback_type) == (r.COMPLAINT, "ARF", "abuse")
    assert [item.address for item in report.recipients] == ["bea@example.com"]
    assert report.recipients[0].bounce_class == ""
    assert report.original_message_id == "<7pq.1122@brand.example>"
    assert report.verp_addresses[:2] == (VERP, UNSUB)


def test_without_original_rcpt_to_the_recipient_is_the_to_of_the_quoted_original():
    report = feedback_parse(arf("Feedback-Type: abuse\nUser-Agent: X\nVersion: 1\n"))

    assert report.recipients[0].address == "bea@example.com"


@pytest.mark.parametrize(
    ("written", "read"), [("Fraud", "fraud"), ("not-spam", "not-spam"), ("VIRUS", "virus")]
)
def test_the_feedback_type_is_lower_cased(written, read):
    report = feedback_parse(arf(f"Feedback-Type: {written}\nVersion: 1\n"))

    assert report.feedback_type == read


def test_a_report_quoting_only_the_headers_of_the_original():
    headers = original().split("\n\n")[0] + "\n"
    report = feedback_parse(
        arf(
            "Feedback-Type: abuse\nVersion: 1\n",
            original_part=headers,
            content_type="text/rfc822-headers",
        )
    )

    assert report.kind == r.COMPLAINT
    assert report.recipients[0].address == "bea@example.com"
    assert report.original_message_id == "<7pq.1122@brand.example>"
    assert VERP in report.verp_addresses


def test_a_microsoft_jmrp_report_is_a_complaint_for_the_original_recipient():
    raw = _crlf(
        f"""From: staff@hotmail.example
To: fbl@brand.example
Subject: complaint about message from 192.0.2.10
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="J"

--J
Content-Type: text/plain

This is a Junk Mail Reporting Program report.

--J
Content-Type: message/rfc822

X-HmXmrOriginalRecipient: <cid@outlook.example>
{original(to="cid@outlook.example")}
--J--
"""
    )
    report = feedback_parse(raw)

    assert (report.kind, report.detector, report.feedback_type) == (r.COMPLAINT, "JMRP", "abuse")
    assert report.recipients[0].address == "cid@outlook.example"
    assert report.original_message_id == "<7pq.1122@brand.example>"


def test_a_feedback_report_part_inside_another_multipart_is_still_a_complaint():
    raw = _crlf(
        f"""From: abuse-desk@isp.example
To: fbl@brand.example
Subject: Spam report
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: text/plain

A user reported this message.

--M
Content-Type: message/feedback-report

Feedback-Type: abuse
Original-Rcpt-To: dee@example.com

--M
Content-Type: message/rfc822

{original(to="dee@example.com")}
--M--
"""
    )
    report = feedback_parse(raw)

    assert (report.kind, report.recipients[0].address) == (r.COMPLAINT, "dee@example.com")


def test_an_abuse_report_with_the_original_attached_is_a_complaint():
    raw = _crlf(
        f"""From: abuse@isp.example
To: abuse@brand.example
Subject: Abuse report: unsolicited mail
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="A"

--A
Content-Type: text/plain

Our customer reported the attached message as spam.

--A
Content-Type: message/rfc822

{original(to="eve@example.com")}
--A--
"""
    )
    report = feedback_parse(raw)

    assert (report.kind, report.detector) == (r.COMPLAINT, "complaint")
    assert report.recipients[0].address == "eve@example.com"


def test_a_bounce_quoting_an_original_is_not_mistaken_for_a_complaint():
    raw = _crlf(
        f"""From: MAILER-DAEMON@mx.example.org
To: {VERP}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="A"

--A
Content-Type: text/plain

<fay@example.com>: host mx.example.com[203.0.113.1] said: 550 5.1.1 no such user

--A
Content-Type: message/rfc822

{original(to="fay@example.com")}
--A--
"""
    )
    assert feedback_parse(raw).kind == r.BOUNCE


def test_of_repeated_original_rcpt_to_fields_the_first_is_the_recipient():
    report = feedback_parse(
        arf(
            "Feedback-Type: abuse\nOriginal-Rcpt-To: ann@example.com\n"
            "Original-Rcpt-To: bo@example.net\n"
        )
    )

    assert [item.address for item in report.recipients] == ["ann@example.com"]


def test_a_dmarc_failure_report_keeps_its_feedback_type():
    report = feedback_parse(arf("Feedback-Type: auth-failure\nAuth-Failure: dmarc\nVersion: 1\n"))

    assert (report.kind, report.feedback_type) == (r.COMPLAINT, "auth-failure")
