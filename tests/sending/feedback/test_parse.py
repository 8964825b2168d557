"""feedback_parse on bounces: RFC 3464 DSNs and the non-standard shapes real MTAs send
(Exim, qmail, Sendmail, Postfix text, Gmail, Exchange, Yahoo), forwarded bounces, and
input that is not a message at all. Each message is small, written for its rule."""

import base64
import json
import time

import pytest

from sending.feedback import report as r
from sending.feedback.parse import feedback_parse

VERP = "bounces+2kq9.mfrwg33vnzsxg4tf@bounces.brand.example"
UNSUB = "unsubscribe+2kq9.nbswy3dpeb3w64tm@bounces.brand.example"


def _crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\n", "\r\n").encode("utf-8")


ORIGINAL = f"""Return-Path: <{VERP}>
Received: from mta1.brand.example (mta1.brand.example [192.0.2.10])
\tby mx.example.org with ESMTPS id 4Xy; Mon, 2 Nov 2026 10:00:00 +0000
From: Brand News <news@brand.example>
To: Alice Reader <alice@example.org>
Subject: November news
Message-ID: <20261102100000.2kq9@brand.example>
List-Unsubscribe: <https://brand.example/u/2kq9>, <mailto:{UNSUB}>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello Alice, write to us at help@brand.example.
"""


def dsn(
    fields: str, *, human: str = "Your message could not be delivered.", headers: str = ""
) -> bytes:
    return _crlf(
        f"""Return-Path: <>
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: {VERP}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
{headers}MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

{human}

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon,  2 Nov 2026 10:00:01 +0000

{fields.strip()}

--B1
Content-Type: message/rfc822

{ORIGINAL}
--B1--
"""
    )


def only(report: r.FeedbackReport) -> r.RecipientReport:
    assert len(report.recipients) == 1, report.recipients
    return report.recipients[0]


# --- RFC 3464 -------------------------------------------------------------------------


def test_a_postfix_dsn_gives_recipient_status_diagnostic_and_remote_mta():
    report = feedback_parse(
        dsn(
            """
Final-Recipient: rfc822; alice@example.org
Original-Recipient: rfc822;alice@example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected:
    User unknown in virtual mailbox table
"""
        )
    )

    assert (report.kind, report.detector) == (r.BOUNCE, "RFC 3464")
    assert only(report) == r.RecipientReport(
        address="alice@example.org",
        action=r.FAILED,
        bounce_class="hard",
        status="5.1.1",
        diagnostic="550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in "
        "virtual mailbox table",
        remote_mta="mail.example.org",
        rule="mailbox unknown",
    )


def test_a_dsn_names_our_delivery_through_the_quoted_original():
    report = feedback_parse(
        dsn("Final-Recipient: rfc822; alice@example.org\nAction: failed\nStatus: 5.1.1\n")
    )

    assert report.original_message_id == "<20261102100000.2kq9@brand.example>"
    assert report.verp_addresses[:2] == (VERP, UNSUB)


def test_a_generic_status_takes_the_code_of_the_diagnostic():
    report = feedback_parse(
        dsn(
            "Final-Recipient: RFC822; <Bob@Example.org>\nAction: failed\nStatus: 5.0.0\n"
            "Diagnostic-Code: smtp; 550 5.1.1 mailbox does not exist\n"
        )
    )

    item = only(report)
    assert (item.address, item.status, item.bounce_class) == ("Bob@Example.org", "5.1.1", "hard")


def test_a_block_text_beats_a_hard_code():
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; carol@example.org\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 5.1.1 Service unavailable; client [192.0.2.10] listed at "
            "Spamhaus\n"
        )
    )

    assert (only(report).bounce_class, only(report).rule) == ("block", "blocklist")


def test_a_failure_no_rule_explains_is_unknown_not_soft():
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; dan@example.org\nAction: failed\nStatus: 5.0.0\n"
            "Diagnostic-Code: smtp; 554 Transaction failed\n"
        )
    )

    assert (only(report).bounce_class, only(report).status) == ("unknown", "5.0.0")


@pytest.mark.parametrize(
    ("status", "diagnostic", "bounce_class"),
    [
        ("4.4.1", "smtp; 421 4.4.1 connect to mx.example.org: Connection timed out", "soft"),
        (
            "4.7.0",
            "smtp; 421 4.7.0 [TSS04] Messages temporarily deferred due to user complaints",
            "block",
        ),
        ("4.2.2", "smtp; 452 4.2.2 Mailbox full", "soft"),
    ],
)
def test_a_delayed_recipient_is_soft_unless_the_reason_is_about_us(
    status, diagnostic, bounce_class
):
    report = feedback_parse(
        dsn(
            f"Final-Recipient: rfc822; erin@example.org\nAction: delayed\nStatus: {status}\n"
            f"Diagnostic-Code: {diagnostic}\n"
        )
    )

    assert report.kind == r.BOUNCE
    assert (only(report).action, only(report).bounce_class) == (r.DELAYED, bounce_class)


def test_an_expired_message_is_a_soft_failure():
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; fay@example.org\nAction: failed\nStatus: 4.4.7\n"
            "Diagnostic-Code: X-Postfix; delivery temporarily suspended: message expired\n"
        )
    )

    assert (only(report).action, only(report).bounce_class) == (r.FAILED, "soft")


def test_a_dsn_where_every_recipient_was_delivered_or_relayed_is_delivered():
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; gus@example.org\nAction: delivered\nStatus: 2.0.0\n\n"
            "Final-Recipient: rfc822; hal@example.org\nAction: relayed\nStatus: 2.0.0\n"
        )
    )

    assert report.kind == r.DELIVERED
    assert [item.action for item in report.recipients] == [r.DELIVERED_ACTION] * 2
    assert all(item.bounce_class == "" for item in report.recipients)


def test_recipient_groups_without_blank_lines_between_them_are_still_apart():
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; ida@example.org\nAction: failed\nStatus: 5.2.2\n"
            "Final-Recipient: rfc822; jon@example.org\nAction: failed\nStatus: 5.1.1\n"
        )
    )

    assert [(i.address, i.bounce_class) for i in report.recipients] == [
        ("ida@example.org", "soft"),
        ("jon@example.org", "hard"),
    ]


def test_original_recipient_stands_in_for_an_empty_final_recipient():
    report = feedback_parse(
        dsn(
            "Original-Recipient: rfc822;kim@example.org\nFinal-Recipient: rfc822;\n"
            "Action: failed\nStatus: 5.1.1\n"
        )
    )

    assert only(report).address == "kim@example.org"


def test_a_dsn_without_diagnostic_code_takes_the_reply_from_its_text():
    human = (
        "<lee@example.org>: host mx.example.org[203.0.113.5] said: 550 5.7.1 Message "
        "rejected\n    due to content restrictions: virus found (in reply to end of DATA command)"
    )
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; lee@example.org\nAction: failed\nStatus: 5.7.1\n", human=human
        )
    )

    item = only(report)
    assert item.diagnostic.startswith("550 5.7.1 Message rejected due to content restrictions")
    assert (item.bounce_class, item.remote_mta) == ("block", "mx.example.org")


# --- non-standard bounces --------------------------------------------------------------


def plain(headers: str, body: str) -> bytes:
    return _crlf(headers.strip() + "\n\n" + body.lstrip("\n"))


EXIM = f"""
Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {VERP}
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied
"""


def test_exim_text_names_the_recipient_and_the_remote_reply():
    body = f"""
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  mona@example.net
    host mx1.example.net [203.0.113.9]
    SMTP error from remote mail server after RCPT TO:<mona@example.net>:
    550 5.1.1 <mona@example.net>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

{ORIGINAL}"""
    report = feedback_parse(plain(EXIM, body))

    item = only(report)
    assert report.kind == r.BOUNCE
    assert item.address == "mona@example.net"
    assert (
        item.diagnostic == "550 5.1.1 <mona@example.net>: Recipient address rejected: User unknown"
    )
    assert (item.status, item.bounce_class, item.remote_mta) == ("5.1.1", "hard", "mx1.example.net")
    # the quoted original still names our delivery
    assert report.original_message_id == "<20261102100000.2kq9@brand.example>"
    assert VERP in report.verp_addresses


def test_exim_local_reasons_without_an_smtp_code_are_read_under_the_address():
    body = """
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  ned@gone.example.net
    Unrouteable address
  olga@example.net
    retry timeout exceeded
"""
    report = feedback_parse(plain(EXIM, body))

    assert [(i.address, i.diagnostic, i.bounce_class) for i in report.recipients] == [
        ("ned@gone.example.net", "Unrouteable address", "hard"),
        ("olga@example.net", "retry timeout exceeded", "soft"),
    ]


def test_qmail_text():
    body = f"""
Hi. This is the qmail-send program at mail.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<pat@example.com>:
Sorry, no mailbox here by that name. (#5.1.1)

<quin@example.com>:
203.0.113.20 does not like recipient.
Remote host said: 552 5.2.2 Mailbox quota exceeded
Giving up on 203.0.113.20.

--- Below this line is a copy of the message.

{ORIGINAL}"""
    report = feedback_parse(
        plain(f"From: MAILER-DAEMON@mail.example.com\nTo: {VERP}\nSubject: failure notice", body)
    )

    assert [(i.address, i.status, i.bounce_class) for i in report.recipients] == [
        ("pat@example.com", "5.1.1", "hard"),
        ("quin@example.com", "5.2.2", "soft"),
    ]
    assert report.recipients[0].diagnostic == "Sorry, no mailbox here by that name. (#5.1.1)"
    assert report.recipients[1].diagnostic.startswith("552 5.2.2 Mailbox quota exceeded")


def test_sendmail_text_without_a_dsn():
    body = """
The original message was received at Mon, 2 Nov 2026 10:00:00 GMT
from mta1.brand.example [192.0.2.10]

   ----- The following addresses had permanent fatal errors -----
<rita@example.com>
    (reason: 550 5.1.1 <rita@example.com>... User unknown)

   ----- Transcript of session follows -----
... while talking to mx.example.com.:
>>> RCPT To:<rita@example.com>
<<< 550 5.1.1 <rita@example.com>... User unknown
550 5.1.1 <rita@example.com>... User unknown
"""
    report = feedback_parse(
        plain(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>\n"
            f"To: <{VERP}>\nSubject: Returned mail: see transcript for details",
            body,
        )
    )

    item = only(report)
    assert item.address == "rita@example.com"
    assert item.diagnostic == "550 5.1.1 <rita@example.com>... User unknown"
    assert (item.bounce_class, item.remote_mta) == ("hard", "mx.example.com")


def test_postfix_text_reply_on_the_address_line():
    body = """
This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

<sam@example.org>: host mail.example.org[203.0.113.7] said: 552 5.2.2 Mailbox
    full: sam@example.org (in reply to RCPT TO command)
"""
    report = feedback_parse(
        plain(
            f"From: MAILER-DAEMON@mx.example.org\nTo: {VERP}\n"
            "Subject: Undelivered Mail Returned to Sender",
            body,
        )
    )

    item = only(report)
    assert (
        item.diagnostic == "552 5.2.2 Mailbox full: sam@example.org (in reply to RCPT TO command)"
    )
    assert (item.bounce_class, item.status, item.remote_mta) == (
        "soft",
        "5.2.2",
        "mail.example.org",
    )


def test_gmail_text_of_a_permanent_failure():
    body = """
Delivery to the following recipient failed permanently:

     tom@example.com

Technical details of permanent failure:
Google tried to deliver your message, but it was rejected by the server for the recipient
domain example.com by mx.example.com. [203.0.113.3].

The error that the other server returned was:
550-5.1.1 The email account that you tried to reach does not exist. Please try
550 5.1.1 double-checking the recipient's email address for typos.

----- Original message -----
"""
    report = feedback_parse(
        plain(
            f"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\nTo: {VERP}\n"
            "Subject: Delivery Status Notification (Failure)",
            body,
        )
    )

    item = only(report)
    assert item.address == "tom@example.com"
    assert item.diagnostic == (
        "550 5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos."
    )
    assert (item.bounce_class, item.remote_mta) == ("hard", "mx.example.com")


def test_exchange_report_without_a_delivery_status_part():
    raw = _crlf(
        f"""From: postmaster@example.com
To: {VERP}
Subject: Undeliverable: November news
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="X"

--X
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Delivery has failed to these recipients or groups:

Uma Field (uma@example.com)<mailto:uma@example.com>
The e-mail address you entered couldn't be found. Please check the recipient'=
s e-mail address and try to resend the message.

Diagnostic information for administrators:

Generating server: EX01.example.com

uma@example.com
#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##

Original message headers:

Message-ID: <20261102100000.2kq9@brand.example>

--X--
"""
    )
    report = feedback_parse(raw)

    item = only(report)
    assert (item.address, item.status, item.bounce_class) == ("uma@example.com", "5.1.1", "hard")
    assert item.diagnostic == "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##"


def test_yahoo_remote_host_said():
    body = """
Sorry, we were unable to deliver your message to the following address.

<vic@yahoo.example>:
Remote host said: 554 delivery error: dd This user doesn't have a yahoo.example account
(vic@yahoo.example) [0] - mta1.mail.example [RCPT_TO]

--- Below this line is a copy of the message.
"""
    report = feedback_parse(
        plain(f"From: MAILER-DAEMON@yahoo.example\nTo: {VERP}\nSubject: Failure Notice", body)
    )

    item = only(report)
    assert item.address == "vic@yahoo.example"
    assert item.diagnostic.startswith("554 delivery error: dd This user doesn't have")
    assert item.bounce_class == "hard"


def test_a_bounce_forwarded_inline_by_a_person_is_read_through_the_forward():
    body = """
Hi, I got this back, what does it mean?

---------- Forwarded message ---------
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
Date: Mon, 2 Nov 2026 at 10:01
Subject: Delivery Status Notification (Failure)
To: <ops@brand.example>

Delivery to the following recipient failed permanently:

     wes@example.com

Technical details of permanent failure:
The error that the other server returned was:
552 5.2.2 The email account that you tried to reach is over quota.
"""
    report = feedback_parse(
        plain(
            "From: Ops <ops@brand.example>\nTo: bounces@brand.example\n"
            "Subject: Fwd: Delivery Status Notification (Failure)",
            body,
        )
    )

    item = only(report)
    assert (item.address, item.bounce_class) == ("wes@example.com", "soft")


def test_a_bounce_forwarded_as_an_attachment_is_read_as_the_bounce_it_is():
    inner = dsn(
        "Final-Recipient: rfc822; xia@example.org\nAction: failed\nStatus: 5.1.1\n"
    ).decode()
    raw = _crlf(
        f"""From: Ops <ops@brand.example>
To: bounces@brand.example
Subject: see attached
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUT"

--OUT
Content-Type: text/plain

Forwarding this one.

--OUT
Content-Type: message/rfc822

{inner.replace(chr(13), "")}
--OUT--
"""
    )
    report = feedback_parse(raw)

    assert report.kind == r.BOUNCE
    assert (only(report).address, only(report).bounce_class) == ("xia@example.org", "hard")
    assert report.original_message_id == "<20261102100000.2kq9@brand.example>"
    assert VERP in report.verp_addresses


def test_a_bounce_naming_no_recipient_falls_back_on_the_quoted_original_to():
    body = f"""
Your message could not be delivered. This is a permanent error.
The mailbox is full.

--- Original message follows.

{ORIGINAL}"""
    report = feedback_parse(
        plain(f"From: MAILER-DAEMON@mx.example.org\nTo: {VERP}\nSubject: Returned mail", body)
    )

    item = only(report)
    assert (item.address, item.bounce_class) == ("alice@example.org", "soft")
    assert report.detector == "quoted original"


def test_a_bounce_naming_no_recipient_at_all_still_reports_its_reason():
    report = feedback_parse(
        plain(
            f"From: MAILER-DAEMON@mx.example.org\nTo: {VERP}\nSubject: Undeliverable",
            "Delivery failed: 550 5.7.1 Message rejected as spam\n",
        )
    )

    item = only(report)
    assert report.kind == r.BOUNCE
    assert (item.address, item.bounce_class) == (None, "block")


def test_addresses_that_are_not_recipients_are_not_reported():
    body = f"""
This is the mail system at host mx.example.org.

Message-ID: <a1b2c3d4e5f6a7b8c9d0.20261102@mta1.brand.example>
Sender: {VERP}
Please contact postmaster@mx.example.org.

<yan@example.org>: host mx.example.org[203.0.113.7] said: 550 5.1.1 unknown user
    (in reply to RCPT TO command)
"""
    report = feedback_parse(
        plain(
            f"From: MAILER-DAEMON@mx.example.org\nTo: {VERP}\n"
            "Subject: Undelivered Mail Returned to Sender",
            body,
        )
    )

    assert [item.address for item in report.recipients] == ["yan@example.org"]


def test_a_delay_warning_without_a_dsn_is_delayed():
    body = """
This is an automatically generated Delivery Status Notification.

THIS IS A WARNING MESSAGE ONLY.
YOU DO NOT NEED TO RESEND YOUR MESSAGE.

Delivery to the following recipients has been delayed.

     zed@example.org

The server will continue trying to deliver for 2 more days.
"""
    report = feedback_parse(
        plain(
            f"From: postmaster@mx.example.org\nTo: {VERP}\n"
            "Subject: Delivery Status Notification (Delay)",
            body,
        )
    )

    assert (only(report).address, only(report).action, only(report).bounce_class) == (
        "zed@example.org",
        r.DELAYED,
        "soft",
    )


# --- not a bounce, and not a message ---------------------------------------------------


def test_a_person_writing_to_the_bounce_address_is_unknown():
    report = feedback_parse(
        plain(
            "From: Amy <amy@example.org>\nTo: bounces@brand.example\nSubject: hello",
            "Please stop sending me the newsletter to amy@example.org, thanks.\n",
        )
    )

    assert (report.kind, report.recipients) == (r.UNKNOWN, ())


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81" * 100,
        b'Content-Type: multipart/report; boundary="nope"\r\n\r\n--nope\r\n'
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822;",
        b"Subject: =?utf-8?b?!!!?=\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@@not base64@@@\r\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n"
        + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 500,
        "Subject: caf\u00e9 \u00e9t\u00e9\r\nFrom: \u00e9@\u00e9.example\r\n\r\nbody".encode(
            "latin-1"
        ),
        b"Subject: =?\xe9so-8859-1?q?caf=E9?=\r\nFrom: MAILER-DAEMON@x.example\r\n\r\n"
        b"<a@example.org>: 550 5.1.1 unknown\r\n",
    ],
    ids=[
        "empty",
        "garbage",
        "truncated-dsn",
        "bad-encodings",
        "deep-nesting",
        "8bit-headers",
        "bad-charset-in-header",
    ],
)
def test_any_bytes_give_a_report_and_never_raise(raw):
    report = feedback_parse(raw)

    assert isinstance(report, r.FeedbackReport)
    assert report.kind in (r.BOUNCE, r.COMPLAINT, r.AUTO_REPLY, r.DELIVERED, r.UNKNOWN)
    assert isinstance(report.as_dict(), dict)
    assert not [note for note in report.notes if note.startswith("parser error")]


def test_a_truncated_dsn_still_yields_what_it_has():
    raw = dsn("Final-Recipient: rfc822; abe@example.org\nAction: failed\nStatus: 5.1.1\n")
    cut = raw[: raw.index(b"Status: 5.1.1") + len(b"Status: 5.1.1")]

    report = feedback_parse(cut)

    assert (only(report).address, only(report).bounce_class) == ("abe@example.org", "hard")


def test_a_ten_megabyte_bounce_parses_well_under_a_second():
    text = dsn("Final-Recipient: rfc822; big@example.org\nAction: failed\nStatus: 5.2.2\n").decode()
    filler = ("A" * 76 + "\r\n") * (10 * 1024 * 1024 // 78)
    raw = text.replace("Hello Alice", filler + "Hello Alice").encode()
    assert len(raw) > 10 * 1024 * 1024

    started = time.perf_counter()
    report = feedback_parse(raw)
    elapsed = time.perf_counter() - started

    assert only(report).address == "big@example.org"
    assert elapsed < 0.8


def test_a_huge_text_bounce_parses_well_under_a_second():
    body = "Delivery failed.\n<huge@example.org>: 550 5.1.1 user unknown\n" + (
        "blah blah user@example.net 550 whatever\n" * 300_000
    )
    started = time.perf_counter()
    report = feedback_parse(
        plain(f"From: MAILER-DAEMON@mx.example.org\nTo: {VERP}\nSubject: Undeliverable", body)
    )
    elapsed = time.perf_counter() - started

    assert report.recipients[0].address == "huge@example.org"
    assert elapsed < 1.0


def test_domino_states_the_reason_after_because():
    body = """
Your message

  Subject: November news

was not delivered to:

  abe@example.jp

because:

  User abe (abe@example.jp) not listed in Domino Directory
"""
    report = feedback_parse(
        plain(
            f"From: Postmaster@example.jp\nTo: {VERP}\n"
            "Subject: DELIVERY FAILURE: User abe not listed",
            body,
        )
    )

    item = only(report)
    assert item.address == "abe@example.jp"
    assert item.diagnostic == "User abe (abe@example.jp) not listed in Domino Directory"
    assert item.bounce_class == "hard"


def test_a_system_mailbox_plainly_listed_as_the_failed_recipient_is_reported():
    body = """
   ----- The following addresses had delivery problems -----
postmaster@mx.example.net

   ----- Non-delivered information -----
The number of messages in recipient's mailbox exceeded the local limit.
"""
    report = feedback_parse(
        plain(f"From: postmaster@example.net\nTo: {VERP}\nSubject: Returned mail", body)
    )

    item = only(report)
    assert (item.address, item.bounce_class) == ("postmaster@mx.example.net", "soft")
    assert (
        item.diagnostic == "The number of messages in recipient's mailbox exceeded the local limit."
    )


def test_a_multipart_whose_boundary_parameter_is_lost_is_read_as_text():
    raw = _crlf(
        f"""From: post_master@sms.example.com
To: {VERP}
Subject: Re: November news
MIME-Version: 1.0
Content-Type: multipart/mixed;
boundary="----=_Part_1"

------=_Part_1
Content-Type: text/plain

Error: Invalid user address

Error message below:
550 - Requested action not taken: no such user here

Message details:
  MAIL FROM: {VERP}
  RCPT TO: 5550100@sms.example.com
------=_Part_1--
"""
    )
    report = feedback_parse(raw)

    item = only(report)
    assert (item.address, item.bounce_class) == ("5550100@sms.example.com", "hard")
    assert item.diagnostic == "550 - Requested action not taken: no such user here"


def test_a_dsn_group_with_an_empty_final_recipient_takes_the_quoted_original_to():
    report = feedback_parse(dsn("Final-Recipient: rfc822;\nAction: failed\nStatus: 5.1.1\n"))

    assert (only(report).address, only(report).bounce_class) == ("alice@example.org", "hard")


def test_dsn_fields_written_into_a_text_part_are_read_as_a_dsn():
    body = """
This is the mail system at host mx.example.org. Delivery failed.

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; cy@example.org
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 Mailbox full
"""
    report = feedback_parse(
        plain(f"From: MAILER-DAEMON@mx.example.org\nTo: {VERP}\nSubject: Undeliverable", body)
    )

    assert report.detector == "RFC 3464 fields in text"
    item = only(report)
    assert (item.address, item.status, item.bounce_class) == ("cy@example.org", "5.2.2", "soft")
    assert item.diagnostic == "552 5.2.2 Mailbox full"


def test_the_sender_side_of_a_transcript_is_not_a_recipient():
    body = """
   ----- The following addresses had permanent fatal errors -----
<dora@example.com>
    (reason: 553 5.1.8 Domain of sender address does not exist)

   ----- Transcript of session follows -----
... while talking to mx.example.com.:
>>> MAIL From:<news@brand.example> SIZE=1200
<<< 553 5.1.8 <news@brand.example>... Domain of sender address does not exist
"""
    report = feedback_parse(
        plain(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.com>\n"
            f"To: {VERP}\nSubject: Returned mail: see transcript for details",
            body,
        )
    )

    assert [(i.address, i.bounce_class) for i in report.recipients] == [
        ("dora@example.com", "block")
    ]


def test_each_recipient_of_an_exim_list_keeps_its_own_reply():
    body = """
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  eli@example.net
    SMTP error from remote mail server after RCPT TO:<eli@example.net>:
    host mx.example.net [203.0.113.4]: 550 5.1.1 <eli@example.net>... User Unknown
  fia@example.net
    SMTP error from remote mail server after RCPT TO:<fia@example.net>:
    host mx.example.net [203.0.113.4]: 452 4.2.2 <fia@example.net>... Mailbox full
"""
    report = feedback_parse(
        plain(EXIM + "X-Failed-Recipients: eli@example.net,\n  fia@example.net", body)
    )

    assert [(i.address, i.diagnostic, i.bounce_class) for i in report.recipients] == [
        ("eli@example.net", "550 5.1.1 <eli@example.net>... User Unknown", "hard"),
        ("fia@example.net", "452 4.2.2 <fia@example.net>... Mailbox full", "soft"),
    ]


def test_an_html_only_bounce_in_base64_and_a_japanese_charset_is_read():
    html = (
        "<html><head><style>p {color: red}</style></head><body>"
        "<p>\u9001\u4fe1\u3067\u304d\u307e\u305b\u3093\u3067\u3057\u305f\u3002</p>"
        "<p>Delivery has failed to these recipients or groups:</p>"
        "<p><a href='mailto:gus@example.jp'>gus@example.jp</a><br>"
        "Remote Server returned '550 5.1.1 User unknown'</p></body></html>"
    )
    encoded = base64.encodebytes(html.encode("iso-2022-jp")).decode()
    raw = _crlf(
        f"""From: postmaster@example.jp
To: {VERP}
Subject: Undeliverable: November news
MIME-Version: 1.0
Content-Type: text/html; charset=iso-2022-jp
Content-Transfer-Encoding: base64

{encoded}"""
    )

    item = only(feedback_parse(raw))

    assert (item.address, item.status, item.bounce_class) == ("gus@example.jp", "5.1.1", "hard")
    assert item.diagnostic == "550 5.1.1 User unknown"


def test_a_bounce_forwarded_with_an_outlook_original_message_marker():
    body = """
FYI, this one came back.

-----Original Message-----
From: Mail Delivery System <MAILER-DAEMON@mx.example.com>
Sent: Monday, November 2, 2026 10:01 AM
To: Ops <ops@brand.example>
Subject: Undeliverable: November news

Delivery has failed to these recipients or groups:

hal@example.com
The email address you entered couldn't be found.

Diagnostic information for administrators:

hal@example.com
Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'

Original message headers:

Message-ID: <20261102100000.2kq9@brand.example>
"""
    report = feedback_parse(
        plain("From: Ops <ops@brand.example>\nTo: bounces@brand.example\nSubject: FW: help", body)
    )

    item = only(report)
    assert (item.address, item.status, item.bounce_class) == ("hal@example.com", "5.1.1", "hard")


def test_a_person_replying_with_our_message_quoted_is_unknown():
    body = f"""
Please take me off this list, it keeps failing to reach my old address ivy@example.org.

-----Original Message-----
From: Brand News <news@brand.example>
Sent: Monday, November 2, 2026 10:00 AM
To: Ivy <ivy@example.org>
Subject: November news

Hello Ivy. Questions? Write to help@brand.example or reply to this message.
Unsubscribe: mailto:{UNSUB}
"""
    report = feedback_parse(
        plain(
            "From: Ivy <ivy@example.org>\nTo: bounces@brand.example\nSubject: RE: November news",
            body,
        )
    )

    assert (report.kind, report.recipients) == (r.UNKNOWN, ())
    assert UNSUB in report.verp_addresses


SES_BOUNCE = (
    '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":'
    '[{"emailAddress":"jo@example.com","action":"failed","status":"5.1.1",'
    '"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{"messageId":"x"}}'
)


@pytest.mark.parametrize(
    "body",
    [
        SES_BOUNCE,
        json.dumps({"Type": "Notification", "Message": SES_BOUNCE}),
        SES_BOUNCE.replace('"mail":{', '"mail":\n {"broken'),  # wrapped: read field by field
    ],
    ids=["notification", "sns-envelope", "broken-json"],
)
def test_an_amazon_ses_notification_mailed_by_sns(body):
    raw = plain(
        "From: SES <no-reply@sns.amazonaws.com>\nTo: ops@brand.example\n"
        "Subject: AWS Notification Message",
        body + "\n\n--\nIf you wish to stop receiving notifications from this topic...\n",
    )

    report = feedback_parse(raw)

    assert (report.kind, report.detector) == (r.BOUNCE, "Amazon SES")
    item = only(report)
    assert (item.address, item.status, item.bounce_class) == ("jo@example.com", "5.1.1", "hard")
    assert item.diagnostic == "550 5.1.1 user unknown"


def test_an_amazon_ses_complaint():
    body = (
        '{"notificationType":"Complaint","complaint":{"complainedRecipients":'
        '[{"emailAddress":"kai@example.com"}],"complaintFeedbackType":"abuse"},"mail":{}}'
    )
    report = feedback_parse(
        plain("From: SES <no-reply@sns.amazonaws.com>\nTo: ops@brand.example\nSubject: AWS", body)
    )

    assert (report.kind, report.feedback_type) == (r.COMPLAINT, "abuse")
    assert only(report).address == "kai@example.com"


def test_a_bounce_of_a_bounce_says_so_in_its_notes():
    inner = dsn("Final-Recipient: rfc822; lu@example.org\nAction: failed\nStatus: 5.1.1\n").decode()
    raw = _crlf(
        f"""From: MAILER-DAEMON@relay.example.net
To: {VERP}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="LOOP"

--LOOP
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

Final-Recipient: rfc822; mailer-daemon@mx.example.org
Action: failed
Status: 5.1.1

--LOOP
Content-Type: message/rfc822

{inner.replace(chr(13), "")}
--LOOP--
"""
    )
    report = feedback_parse(raw)

    assert report.kind == r.BOUNCE
    assert "the quoted original is itself a bounce" in report.notes
    assert (
        "the quoted original is itself a bounce"
        not in feedback_parse(dsn("Final-Recipient: rfc822; a@example.org\nAction: failed\n")).notes
    )


def _text_bounce(body: str, *, subject: str = "Undelivered Mail Returned to Sender") -> bytes:
    return _crlf(
        f"""Return-Path: <>
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: {VERP}
Subject: {subject}
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

{body}"""
    )


def test_the_original_recipient_of_a_dsn_wins_over_the_alias_it_was_expanded_to() -> None:
    report = feedback_parse(
        dsn(
            "Final-Recipient: rfc822; ahart@imap.example.org\n"
            "Original-Recipient: rfc822;alice@example.org\n"
            "Action: failed\nStatus: 5.2.2\n"
            "Diagnostic-Code: x-unix; error writing message: Disk quota exceeded\n",
            human="<ahart@imap.example.org> (expanded from <alice@example.org>): cannot update"
            " mailbox: Disk quota exceeded",
        )
    )

    item = only(report)
    assert (item.address, item.bounce_class, item.status) == ("alice@example.org", "soft", "5.2.2")


def test_a_text_bounce_names_the_address_an_alias_was_expanded_from() -> None:
    report = feedback_parse(
        _text_bounce(
            '<ahart@imap.example.org> (expanded from <alice@example.org>): unknown user: "ahart"\n'
        )
    )

    item = only(report)
    assert (item.address, item.bounce_class) == ("alice@example.org", "hard")


def test_the_next_recipient_line_ends_the_reply_of_the_one_before() -> None:
    report = feedback_parse(
        _text_bounce(
            "<a@example.org>: host mx.example.org[198.51.100.1] said: 550\n"
            "    <a@example.org>: User unknown in local recipient table (in reply to RCPT TO\n"
            "    command)\n"
            "<b@example.com>: host mx.example.com[198.51.100.2] said: 554 5.7.1\n"
            "    Message rejected: spam score too high (in reply to end of DATA command)\n"
        )
    )

    got = {(item.address, item.bounce_class, item.status) for item in report.recipients}
    assert got == {("a@example.org", "hard", ""), ("b@example.com", "block", "5.7.1")}


def test_an_address_after_a_label_in_any_language_is_the_recipient() -> None:
    report = feedback_parse(
        _text_bounce(
            "메일 발송 실패 안내\n\n받는 사람 : kim@example.kr\n"
            "실패 사유 : 받는 사람의 메일 주소가 존재하지 않습니다. (550 5.1.1 No such user)\n",
            subject="=?utf-8?b?66mU7J28IOuwnOyGoSDsi6TtjKg=?=",
        )
    )

    item = only(report)
    assert (item.address, item.bounce_class, item.status) == ("kim@example.kr", "hard", "5.1.1")


def test_the_subject_names_the_recipient_when_nothing_else_does() -> None:
    report = feedback_parse(
        _text_bounce(
            "The message you sent could not be delivered.\n\nReason: user unknown\n",
            subject="Undeliverable mail to carol@example.net",
        )
    )

    item = only(report)
    assert (item.address, item.bounce_class) == ("carol@example.net", "hard")
    assert report.detector == "subject"


def test_an_html_ndr_that_links_the_recipient_under_its_name_names_it() -> None:
    raw = _crlf(
        f"""Return-Path: <>
From: Microsoft Outlook <postmaster@example.com>
To: {VERP}
Subject: Undeliverable: November news
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p>Your message to <a href="mailto:dan@example.com">Dan Smith</a> couldn't be
delivered.</p><p>Status code: 550 5.1.1</p></body></html>
"""
    )

    item = only(feedback_parse(raw))
    assert (item.address, item.bounce_class, item.status) == ("dan@example.com", "hard", "5.1.1")
