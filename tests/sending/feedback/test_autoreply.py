"""Automatic replies (out of office, vacation, auto-acknowledgements, challenge-response)
are recognised and ignored, but never at the expense of a real bounce that carries some of
the same headers."""

import pytest

from sending.feedback import report as r
from sending.feedback.parse import feedback_parse


def message(headers: str, body: str = "I am out of the office until Monday.\n") -> bytes:
    return (headers.strip() + "\n\n" + body).replace("\n", "\r\n").encode("utf-8")


BASE = "From: Gil Reader <gil@example.com>\nTo: news@brand.example\n"


@pytest.mark.parametrize(
    ("headers", "detector"),
    [
        ("Subject: Automatic reply: November news\nAuto-Submitted: auto-replied", "subject"),
        (
            "Subject: Out of Office: November news\nX-Auto-Response-Suppress: All",
            "X-Auto-Response-Suppress",
        ),
        ("Subject: Re: November news\nX-Autoreply: yes", "X-Autoreply"),
        ("Subject: Re: November news\nX-Autorespond: Re: November news", "X-Autorespond"),
        ("Subject: Re: November news\nPrecedence: auto_reply", "Precedence"),
        ("Subject: =?utf-8?q?Abwesenheitsnotiz=3A_November_news?=", "subject"),
        ("Subject: =?utf-8?q?R=C3=A9ponse_automatique_=3A_November_news?=", "subject"),
        ("Subject: =?utf-8?q?Respuesta_autom=C3=A1tica=3A_November_news?=", "subject"),
        ("Subject: Auto: November news", "subject"),
        ("Subject: Re: November news\nAuto-Submitted: auto-replied", "Auto-Submitted"),
        (
            "Subject: Please confirm your email to reach me\nFrom: Boxbe <notify@boxbe.example>",
            "challenge-response",
        ),
        ("Subject: Verify your message to gil@example.com", "challenge-response"),
    ],
)
def test_an_automatic_reply_is_recognised(headers, detector):
    report = feedback_parse(message(BASE + headers))

    assert (report.kind, report.detector) == (r.AUTO_REPLY, detector)
    assert report.recipients == ()


def test_a_postfix_bounce_with_auto_submitted_is_a_bounce():
    raw = message(
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
        "To: bounces+1.aaaaaaaaaaaaaaaa@bounces.brand.example\n"
        "Subject: Undelivered Mail Returned to Sender\nAuto-Submitted: auto-replied",
        "<hana@example.org>: host mx.example.org[203.0.113.2] said: 550 5.1.1 User unknown\n"
        "    (in reply to RCPT TO command)\n",
    )

    report = feedback_parse(raw)

    assert report.kind == r.BOUNCE
    assert report.recipients[0].address == "hana@example.org"


def test_auto_submitted_with_bounce_text_and_a_null_return_path_is_a_bounce():
    raw = message(
        "Return-Path: <>\nFrom: mail@relay.example.org\nTo: bounces@brand.example\n"
        "Subject: Notice\nAuto-Submitted: auto-replied",
        "Your message could not be delivered to ivy@example.org.\n"
        "ivy@example.org: 550 5.2.1 mailbox disabled\n",
    )

    report = feedback_parse(raw)

    assert report.kind == r.BOUNCE
    assert (report.recipients[0].address, report.recipients[0].bounce_class) == (
        "ivy@example.org",
        "hard",
    )


def test_an_out_of_office_subject_does_not_hide_a_dsn():
    raw = message(
        "From: postmaster@example.org\nTo: bounces@brand.example\n"
        "Subject: Automatic reply: Undeliverable\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        "Final-Recipient: rfc822; jay@example.org\nAction: failed\nStatus: 5.1.1\n\n--B--\n",
    )

    assert feedback_parse(raw).kind == r.BOUNCE


def test_an_auto_generated_notice_without_bounce_evidence_is_an_automatic_reply():
    raw = message(
        BASE + "Subject: Your ticket has been updated\nAuto-Submitted: auto-generated", "Thanks.\n"
    )

    assert feedback_parse(raw).kind == r.AUTO_REPLY


def test_a_read_receipt_is_an_automatic_reply():
    raw = message(
        BASE + "Subject: Read: November news\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="M"',
        "--M\nContent-Type: text/plain\n\nYour message was read.\n\n"
        "--M\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; gil@example.com\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n\n--M--\n",
    )

    report = feedback_parse(raw)

    assert (report.kind, report.detector) == (r.AUTO_REPLY, "MDN")
