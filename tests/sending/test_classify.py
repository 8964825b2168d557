"""The refusal classifier against replies real mail servers give (Gmail, Microsoft 365 /
Outlook, Yahoo, iCloud, Mimecast, Postfix, Exim and others)."""

import pytest

from sending.classify import (
    RULES,
    Classification,
    Rule,
    classify,
    enhanced_code_of,
    feedback_class_of,
    rules_insert,
    status_refined,
)

# (code, reply text as the server wrote it, expected class, expected rule)
BOUNCES = [
    # --- hard: the address or the domain is gone ----------------------------------------
    (
        550,
        "5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "double-checking the recipient's email address for typos or\n"
        "unnecessary spaces. For more information, go to\n"
        "https://support.google.com/mail/?p=NoSuchUser",
        "hard",
        "mailbox unknown",
    ),
    (
        550,
        "5.2.1 The email account that you tried to reach is disabled.",
        "hard",
        "mailbox unknown",
    ),
    (
        550,
        "5.4.1 Recipient address rejected: Access denied. For more information see "
        "https://aka.ms/EXOSmtpErrors [AM0PR02MB1234.eurprd02.prod.outlook.com]",
        "hard",
        "microsoft unknown recipient",
    ),
    (
        550,
        "5.5.0 Requested action not taken: mailbox unavailable (S2017062302)",
        "hard",
        "recipient rejected",
    ),
    (
        550,
        "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "hard",
        "mailbox unknown",
    ),
    (
        554,
        "delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - "
        "mta1234.mail.ne1.yahoo.com",
        "hard",
        "mailbox unknown",
    ),
    (
        554,
        "delivery error: dd Sorry your message to x@yahoo.com cannot be delivered. "
        "This mailbox is disabled (554.30).",
        "hard",
        "mailbox unknown",
    ),
    (
        550,
        "5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
        "hard",
        "mailbox unknown",
    ),
    (
        550,
        "5.1.1 <x@example.org>: Recipient address rejected: User unknown in relay recipient table",
        "hard",
        "mailbox unknown",
    ),
    (550, "Unrouteable address", "hard", "domain unknown"),  # Exim, no enhanced code
    (550, "No such user here", "hard", "mailbox unknown"),
    (550, "Requested action not taken: mailbox unavailable", "hard", "recipient rejected"),
    (550, "Mailbox does not exist", "hard", "mailbox unknown"),
    (
        550,
        "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
        "hard",
        "mailbox unknown",
    ),
    (553, "5.1.3 Invalid address", "hard", "bad mailbox (code)"),
    (556, "5.1.10 Recipient address has null MX", "hard", "domain unknown"),
    (
        550,
        "5.1.2 <x@nx.example>: Host or domain name not found. Name service error",
        "hard",
        "domain unknown",
    ),
    (550, "5.4.4 Unable to route", "hard", "bad domain (code)"),
    (
        550,
        "5.7.1 <x@example.org>: Recipient address rejected: user unknown",
        "hard",
        "mailbox unknown",
    ),
    # --- block: the receiver refused us ---------------------------------------------------
    (
        550,
        "5.7.1 Service unavailable, Client host [198.51.100.7] blocked using Spamhaus. To "
        "request removal from this list see https://www.spamhaus.org/query/ip/198.51.100.7",
        "block",
        "blocklist",
    ),
    (
        550,
        "5.7.1 Unfortunately, messages from [198.51.100.7] weren't sent. Please contact your "
        "Internet service provider since part of their network is on our block list (S3150).",
        "block",
        "blocklist",
    ),
    (
        550,
        "5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail "
        "requires all senders to authenticate with either SPF or DKIM.",
        "block",
        "authentication",
    ),
    (
        550,
        "5.7.26 Unauthenticated email from brand.example is not accepted due to domain's "
        "DMARC policy.",
        "block",
        "authentication",
    ),
    (
        550,
        "5.7.1 [198.51.100.7] Our system has detected that this message is likely "
        "unsolicited mail. To reduce the amount of spam sent to Gmail, this message has "
        "been blocked.",
        "block",
        "spam or content",
    ),
    (
        554,
        "5.7.9 Message not accepted for policy reasons.  See "
        "https://help.yahoo.com/kb/postmaster/SLN7253.html",
        "block",
        "policy",
    ),
    (
        553,
        "5.7.2 [TSS09] All messages from 198.51.100.7 will be permanently deferred; Retrying "
        "will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
        "block",
        "reputation",
    ),
    (
        550,
        "5.7.606 Access denied, banned sending IP [198.51.100.7]. To request removal from "
        "this list please visit https://sender.office.com/",
        "block",
        "blocklist",
    ),
    (
        550,
        "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
        "block",
        "security or policy (code)",
    ),
    (
        550,
        "5.7.350 Remote server returned message detected as spam -> 554 5.7.1 Your message "
        "has been rejected",
        "block",
        "spam or content",
    ),
    (554, "5.7.1 <x@example.org>: Relay access denied", "block", "sender or relay refused"),
    (
        550,
        "Verification failed for <b+1@bounces.brand.example>\n"
        "Unrouteable address\nSender verify failed",
        "block",
        "sender or relay refused",
    ),
    (
        554,
        "5.7.1 <unknown[198.51.100.7]>: Client host rejected: Access denied",
        "block",
        "sender or relay refused",
    ),
    (550, "5.7.1 [CS01] Message rejected due to local policy.", "block", "policy"),
    (550, "Rejected by header based Anti-Spoofing policy", "block", "policy"),
    (550, "Administrative prohibition", "block", "policy"),
    (
        550,
        "5.7.1 Message rejected due to content restrictions: virus found",
        "block",
        "spam or content",
    ),
    (530, "5.7.0 Authentication required", "block", "authentication"),
    (553, "5.1.8 Bad outbound sender", "block", "bad sender (code)"),
    (550, "5.1.7 Invalid sender address format", "block", "bad sender (code)"),
    # --- soft: the mailbox exists but cannot take this message ------------------------------
    (
        552,
        "5.2.2 The email account that you tried to reach is over quota. Please direct\n"
        "the recipient to https://support.google.com/mail/?p=OverQuotaPerm",
        "soft",
        "mailbox full",
    ),
    (552, "5.2.2 Mailbox full", "soft", "mailbox full"),
    (552, "5.3.4 Message size exceeds fixed limit", "soft", "message too big"),
    (552, "Too much mail data", "soft", "message too big"),
    (554, "5.4.6 Hop count exceeded - possible mail loop", "soft", "mail loop"),
    (550, "5.2.3 Message length exceeds administrative limit", "soft", "message too big"),
    # --- nothing to go on: soft, and the contact is never suppressed on a guess -------------
    (554, "5.0.0 Service unavailable", "soft", ""),
    (550, "Rejected", "soft", ""),
]


@pytest.mark.parametrize(("code", "text", "bounce_class", "rule"), BOUNCES)
def test_a_refusal_is_classified_from_its_code_and_text(code, text, bounce_class, rule):
    verdict = classify(code=code, text=text)

    assert verdict == Classification("bounced", bounce_class, rule)


@pytest.mark.parametrize(
    ("code", "text", "rule"),
    [
        (
            451,
            "4.7.0 [TSS04] Messages from 198.51.100.7 temporarily deferred due to unexpected "
            "volume or user complaints - 4.16.55.1",
            "reputation",
        ),
        (
            450,
            "4.2.1 The user you are trying to contact is receiving mail at a rate that\n"
            "prevents additional messages from being delivered.",
            "reputation",
        ),
        (452, "4.2.2 The email account that you tried to reach is over quota.", "mailbox full"),
        (
            451,
            "4.7.500 Server busy. Please try again later from [198.51.100.7]. (S77719)",
            "security or policy (code)",
        ),
        (421, "4.7.0 Try again later, closing connection.", "security or policy (code)"),
        (450, "4.1.1 <x@example.org>: Recipient address rejected: User unknown", "mailbox unknown"),
        (451, "4.3.0 Temporary failure", ""),
    ],
)
def test_a_4xx_is_deferred_whatever_it_says(code, text, rule):
    verdict = classify(code=code, text=text)

    assert (verdict.state, verdict.bounce_class) == ("deferred", "")
    assert verdict.rule == rule  # a hint for shaping, never a bounce class


def test_a_2xx_is_sent():
    assert classify(code=250, text="2.0.0 OK 1700000000 x1si123 - gsmtp") == Classification("sent")


def test_the_enhanced_code_argument_wins_over_the_text():
    verdict = classify(code=550, enhanced="5.1.1", text="Rejected")

    assert (verdict.bounce_class, verdict.rule) == ("hard", "bad mailbox (code)")


def test_a_dsn_without_a_reply_code_is_classified_from_its_status():
    assert classify(code=None, enhanced="5.2.2", text="") == Classification(
        "bounced", "soft", "mailbox full (code)"
    )
    assert classify(code=None, enhanced="4.4.7", text="delivery time expired").state == "deferred"
    assert classify(code=None, text="smtp; 550 5.1.1 user unknown").bounce_class == "hard"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("5.1.1 The email account that you tried to reach does not exist.", "5.1.1"),
        ("<x@example.org>: Recipient address rejected 5.1.10 here", "5.1.10"),
        ("smtp; 550 5.7.26 Unauthenticated email", "5.7.26"),
        ("#5.1.0 Address rejected", "5.1.0"),
        ("Client host [198.51.100.7] blocked", ""),  # an IP address is not a status code
        ("Message size 5.2.2.1 is odd", ""),
        ("Ok: queued as 4ABC", ""),
        ("status 2.0.0.", "2.0.0"),
    ],
)
def test_enhanced_code_of_a_reply_text(text, code):
    assert enhanced_code_of(text) == code


def test_the_feedback_issue_can_insert_a_rule_ahead_of_the_others(monkeypatch):
    monkeypatch.setattr("sending.classify.RULES", list(RULES))
    rule = Rule("dsn: mailbox moved", "hard", pattern=r"has moved to")

    rules_insert(rule, before="blocklist")

    assert (
        classify(code=550, text="Mailbox has moved to a blocked host").rule == "dsn: mailbox moved"
    )


def test_a_rule_needs_codes_or_a_pattern():
    with pytest.raises(ValueError, match="needs codes"):
        Rule("empty", "hard")


# --- the Feedback issue: what bounce messages say ------------------------------------------

# (enhanced status, diagnostic as bounces state it, delayed?, expected class)
FEEDBACK = [
    ("5.0.0", "550 Requested action not taken: mailbox not available", False, "hard"),
    ("", "554 delivery error: dd This account has been disabled or discontinued", False, "hard"),
    ("5.2.1", "550 5.2.1 The email account that you tried to reach is inactive.", False, "hard"),
    ("", "550 5.1.10 RESOLVER.ADR.RecipNotFound; not found", False, "hard"),
    ("5.0.0", "550 Recipient address rejected: Access denied. AS(201806281)", False, "hard"),
    ("", "Sorry, no mailbox here by that name. (#5.1.1)", False, "hard"),
    ("", "User john (john@example.org) not listed in Domino Directory", False, "hard"),
    (
        "5.4.4",
        "Host or domain name not found. Name service error for name=x.example type=A",
        False,
        "hard",
    ),
    ("", "550 Host unknown", False, "hard"),
    ("", "Your message wasn't delivered because the address couldn't be found", False, "hard"),
    ("5.2.2", "552 5.2.2 Mailbox quota exceeded", False, "soft"),
    ("", "552 Requested mail action aborted: exceeded storage allocation", False, "soft"),
    ("", "550 5.2.0 insufficient storage on the account", False, "soft"),
    ("4.4.7", "Delivery expired (message too old)", False, "soft"),
    ("5.4.7", "retry timeout exceeded", False, "soft"),
    ("", "connect to mx.example.org[203.0.113.1]:25: Connection timed out", False, "soft"),
    (
        "4.4.3",
        "Name service error for name=x.example type=MX: Host not found, try again",
        True,
        "soft",
    ),
    ("4.7.0", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred", True, "block"),
    ("4.7.0", "421 4.7.0 Try again later, closing connection.", True, "block"),
    ("", "451 Rate limited: too many messages from your IP", True, "block"),
    ("", "550 Too many invalid recipients", False, "block"),
    (
        "5.1.1",
        "550 5.1.1 Service unavailable; client [192.0.2.1] listed at Spamhaus",
        False,
        "block",
    ),
    ("5.7.1", "554 5.7.1 Message rejected: detected as spam", False, "block"),
    ("5.0.0", "554 Transaction failed", False, "unknown"),
    ("", "", False, "unknown"),
    ("", "451 Temporary local problem - please try later", False, "soft"),
    ("4.0.0", "", True, "soft"),
    # shapes found auditing bounces of many MTAs (the corpus holds the whole messages)
    ("5.5.3", "550 5.5.3 Too many recipients", False, "soft"),
    ("", "all relevant MX records point to non-existent hosts", False, "hard"),
    ("", "The domain name (example.net) does not appear to be registered.", False, "hard"),
    (
        "5.0.0",
        "the group you tried to contact (sales) may not exist, or you may not have "
        "permission to post messages to the group",
        False,
        "block",
    ),
    ("", "550 Usuário inexistente", False, "hard"),
    ("", "550 utente inesistente / user does not exist", False, "hard"),
    ("", "550 5.1.1 <x@example.de>: Benutzer unbekannt", False, "hard"),
    ("5.2.2", "552 5.2.2 Boite du destinataire pleine. OFR_999", False, "soft"),
]


@pytest.mark.parametrize(("enhanced", "text", "delayed", "bounce_class"), FEEDBACK)
def test_feedback_classes_come_from_the_code_and_the_text(enhanced, text, delayed, bounce_class):
    assert feedback_class_of(enhanced=enhanced, text=text, delayed=delayed)[0] == bounce_class


def test_an_unmatched_failure_is_unknown_for_feedback_but_soft_for_a_reply():
    assert feedback_class_of(enhanced="5.0.0", text="554 Rejected") == ("unknown", "")
    assert classify(code=554, text="5.0.0 Rejected").bounce_class == "soft"


@pytest.mark.parametrize(
    ("status", "text", "refined"),
    [
        ("5.0.0", "550 5.1.1 user unknown", "5.1.1"),
        ("5.1.0", "5.1.0 - Unknown address error 550-'5.1.1 <x@example.org>: unknown'", "5.1.1"),
        ("5.1.0", "550 5.7.1 blocked", "5.1.0"),
        # a wrapper's generic code, then the remote's specific one
        ("5.0.0", "5.1.0 - Unknown address error 550-'5.7.1 Message rejected as spam'", "5.7.1"),
        ("5.0.0", "550 5.1.0 Address rejected", "5.1.0"),
        ("5.2.2", "550 5.1.1 user unknown", "5.2.2"),
        ("", "smtp; 552 5.2.2 full", "5.2.2"),
        ("", "no code here", ""),
    ],
)
def test_a_generic_status_is_refined_by_the_text(status, text, refined):
    assert status_refined(status, text) == refined


def test_a_delay_for_a_policy_code_alone_is_soft_unless_it_is_a_421_throttle():
    assert (
        feedback_class_of(enhanced="4.7.1", text="450 4.7.1 try later", delayed=True)[0] == "soft"
    )
    assert (
        feedback_class_of(enhanced="4.7.0", text="421 4.7.0 try later", delayed=True)[0] == "block"
    )
