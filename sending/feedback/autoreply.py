"""Out-of-office replies, vacation notices, auto-acknowledgements and challenge-response
requests: mail a machine wrote back on the recipient's behalf. They say nothing about
deliverability and are ignored; recognising them keeps them out of the review list.

Real bounces carry some of the same marks (Postfix and Exim write "Auto-Submitted:
auto-replied"), so the parser weighs these signals against the evidence of a bounce."""

from __future__ import annotations

import re
from email.message import Message

from sending.feedback.mime import header_text, report_type

STRONG, WEAK = "strong", "weak"

_SUBJECT = re.compile(
    r"^(?:(?:re|fw|fwd|aw|sv|antw)\s*:\s*)*(?:"
    r"auto(?:matic|matische|matisch|matique|matica|mática|mático)?[ -]?(?:reply|response|"
    r"respon(?:der|se)|antwort|antwoord|risposta|réponse|reponse|respuesta|resposta|svar)"
    r"|(?:réponse|reponse|respuesta|risposta|resposta|antwort|svar) auto"
    r"|auto:|autoreply|autoresponse|out of (?:the )?office|ooo\b|abwesenheit|away from (?:the |my )"
    r"|on vacation|vacation (?:reply|notice|message|response)|i am (?:out|away)|i'm (?:out|away)"
    r"|fuera de la oficina|hors du bureau|niet aanwezig|assente|urlaub|congés"
    r"|thank you for (?:your|contacting)|thanks for (?:your|contacting)|we have received your"
    r"|(?:your )?(?:request|ticket|case) (?:has been )?(?:received|created|#)|\[?ticket ?#"
    r")",
    re.I,
)
_SUBJECT_ANYWHERE = re.compile(
    r"\bautomatic reply\b|\bauto[- ]?reply\b|\bout of (?:the )?office\b|\bautomatische antwort\b"
    r"|\babwesenheitsnotiz\b|\bréponse automatique\b|\brespuesta automática\b"
    r"|\brisposta automatica\b|\bautomatisch antwoord\b|\bresposta automática\b",
    re.I,
)
_CHALLENGE = re.compile(
    r"please confirm|verify your (?:e-?mail|message|address)|confirm your (?:e-?mail|message)"
    r"|boxbe|spam ?arrest|challenge[- ]response|sender verification|verification request"
    r"|awaiting (?:your )?(?:verification|approval)|is requesting (?:your )?verification"
    r"|mailbox is protected|pending (?:your )?(?:verification|approval)"
    r"|approve (?:this|your) (?:sender|message)"
    r"|\bsecure ?mail\b.{0,200}\bverif|antispam (?:verification|protection)",
    re.I,
)
_CHALLENGE_SENDERS = re.compile(
    r"boxbe|spamarrest|sanebox|mailchannels.{0,200}verif|bluebottle", re.I
)


def auto_reply_signal(msg: Message) -> tuple[str, str]:
    """(strength, detector): strength "strong" (headers or subject say so, or a challenge),
    "weak" (Auto-Submitted only), or "" with no sign of an automatic reply."""
    subject = header_text(msg, "Subject")
    sender = header_text(msg, "From")
    if report_type(msg) == "disposition-notification":
        return STRONG, "MDN"  # a read receipt
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply", "X-Vacation"):
        value = header_text(msg, name).lower()
        if value and value not in ("no", "false", "0"):
            return STRONG, name
    for name in ("Precedence", "X-Precedence"):
        if header_text(msg, name).lower().replace("-", "_") == "auto_reply":
            return STRONG, name
    if _CHALLENGE.search(subject) or _CHALLENGE_SENDERS.search(sender):
        return STRONG, "challenge-response"
    if _SUBJECT.search(subject) or _SUBJECT_ANYWHERE.search(subject):
        suppress = header_text(msg, "X-Auto-Response-Suppress")
        return STRONG, "X-Auto-Response-Suppress" if suppress else "subject"
    auto_submitted = header_text(msg, "Auto-Submitted").lower()
    if auto_submitted.startswith("auto-replied"):
        return WEAK, "Auto-Submitted"
    if auto_submitted.startswith("auto-"):
        return WEAK, "Auto-Submitted"
    if header_text(msg, "X-Auto-Response-Suppress") and header_text(msg, "In-Reply-To"):
        return WEAK, "X-Auto-Response-Suppress"
    return "", ""
