"""One classifier for every refusal: an SMTP reply during sending, and (the Feedback issue)
the Status and Diagnostic-Code of a DSN.

    classify(code=550, enhanced="5.1.1", text="The email account ... does not exist")
    -> Classification(state="bounced", bounce_class="hard", rule="mailbox unknown")

The state follows the reply code (2xx sent, 4xx deferred, 5xx bounced); the class of a
bounce comes from RULES, a table read top to bottom where the first rule that matches
wins. A rule names enhanced codes, a text pattern, or both (both must then match).

    hard   the address or its domain cannot receive mail: the address is suppressed
    block  the receiver refused us (policy, reputation, content, authentication, sender):
           counted against the sending IP and domain, the contact untouched
    soft   anything else permanent but not about the address (mailbox full, too big)

The table's order is the policy: when the code and the text disagree, the class that
harms the contact least wins, so block texts come before hard ones ("550-Unrouteable
address ... Sender verify failed" is about our sender, not the recipient), and the
ambiguous family 5.7.x outranks only the weakest hard texts. An unmatched 5xx is soft:
an address is never suppressed on a guess. The Feedback issue extends the table by
inserting rules (see `rules_insert`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HARD, SOFT, BLOCK = "hard", "soft", "block"

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")


def enhanced_code_of(text: str) -> str:
    """The first RFC 3463 enhanced status code in a reply text ("5.1.1"), or ""."""
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


@dataclass(frozen=True)
class Classification:
    state: str  # sent | deferred | bounced
    bounce_class: str = ""  # hard | soft | block for bounced, "" otherwise
    rule: str = ""  # the rule that matched; for a 4xx a hint (e.g. a reputation deferral)


@dataclass(frozen=True)
class Rule:
    """Codes are full enhanced codes ("5.1.1") or families ("5.7.*"); the class digit is
    not compared, so a rule also names the matching 4.x.x deferrals."""

    name: str
    bounce_class: str
    codes: tuple[str, ...] = ()
    pattern: str = ""

    def __post_init__(self) -> None:
        if not (self.codes or self.pattern):
            raise ValueError(f"Rule {self.name!r} needs codes, a pattern or both.")
        object.__setattr__(self, "_regex", re.compile(self.pattern, re.I) if self.pattern else None)

    def matches(self, enhanced: str, text: str) -> bool:
        if self.codes and not any(_code_matches(code, enhanced) for code in self.codes):
            return False
        regex = self._regex  # type: ignore[attr-defined]
        return regex is None or regex.search(text) is not None


def _code_matches(rule_code: str, enhanced: str) -> bool:
    if not enhanced:
        return False
    if rule_code.endswith("*"):
        return enhanced[1:].startswith(rule_code[1:-1])
    return enhanced[1:] == rule_code[1:]


RULES: list[Rule] = [
    # --- high-confidence combinations of a code and a text --------------------------------
    # Microsoft 365 answers an address that does not exist in the tenant this way.
    Rule("microsoft unknown recipient", HARD, ("5.4.1",), r"recipient address rejected"),
    # --- block: who we are, not who the recipient is ---------------------------------------
    Rule(
        "blocklist",
        BLOCK,
        pattern=(
            r"spamhaus|spamcop|barracuda|sorbs|surbl|uribl|\bblock ?list|\bblack ?list"
            r"|\b(?:block|black)listed|\brbl\b|\bdnsbl|\blisted (?:at|on|in|by)\b"
            r"|\bS3150\b|\bS3140\b|banned sending ip"
        ),
    ),
    Rule(
        "reputation",
        BLOCK,
        pattern=(
            r"reputation|\bsender score|\bTSS\d\d|\bcomplaints?\b|unexpected volume"
            r"|rate limit|too many (?:messages|connections)|sending rate|receiving mail at a rate"
        ),
    ),
    Rule(
        "spam or content",
        BLOCK,
        pattern=(
            r"\bspam|unsolicited|\bbulk mail|\bcontent (?:rejected|filter)|message content"
            r"|\bvirus|malware|phish|suspicious"
        ),
    ),
    Rule(
        "authentication",
        BLOCK,
        pattern=r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|not authenticated"
        r"|authentication (?:required|failed)",
    ),
    Rule(
        "sender or relay refused",
        BLOCK,
        pattern=(
            r"sender address rejected|sender (?:is )?(?:denied|rejected|blocked)"
            r"|sender verif\w* failed|verification failed for|domain of sender|bad sender"
            r"|relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed)"
            r"|unable to relay|not permitted to relay|client host rejected|reverse dns"
            r"|\bptr\b|\brdns\b|\bhelo\b|\behlo\b|not allowed to send"
        ),
    ),
    Rule(
        "policy",
        BLOCK,
        pattern=r"\bpolic(?:y|ies)\b|\bblocked\b|\bprohibited\b|administrative prohibition",
    ),
    # --- soft: the mailbox exists but cannot take this message now -------------------------
    Rule(
        "mailbox full",
        SOFT,
        pattern=(
            r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)"
            r"|exceed\w* (?:the |its |his )?(?:storage|quota)|insufficient (?:system )?storage"
            r"|out of storage"
            r"|mailbox size limit|storage (?:space|limit)"
        ),
    ),
    Rule(
        "message too big",
        SOFT,
        pattern=(
            r"message (?:size )?(?:too (?:big|large)|exceeds)|size (?:limit|exceeds)"
            r"|too much mail data|message length exceeds|exceeds (?:the )?maximum"
        ),
    ),
    Rule("mail loop", SOFT, pattern=r"mail loop|loop detected|too many hops|hop count"),
    # --- hard: the address or the domain does not exist ------------------------------------
    Rule(
        "mailbox unknown",
        HARD,
        pattern=(
            r"user unknown|unknown user|no such (?:user|recipient|mailbox|address)"
            r"|does ?n[o']t exist|mailbox not found|recipient not found|user not found"
            r"|address not found|recipient unknown|address unknown|unknown recipient"
            r"|invalid (?:recipient|mailbox)|not a valid (?:mailbox|recipient|user)"
            r"|no mailbox|doesn'?t have an? [\w.-]+ account|unknown or illegal alias"
            r"|(?:account|mailbox|user|address)\b[^.]{0,40}\bdisabled"
            r"|(?:mailbox|account) (?:is )?(?:inactive|no longer (?:active|available))"
            r"|RecipientNotFound"
        ),
    ),
    Rule(
        "domain unknown",
        HARD,
        pattern=(
            r"no such domain|domain (?:name )?(?:not found|does ?n[o']t exist)"
            r"|host or domain name not found|unrouteable|unroutable|null mx"
        ),
    ),
    # --- codes whose meaning is clear on its own ---------------------------------------------
    Rule("bad mailbox (code)", HARD, ("5.1.1", "5.1.3", "5.1.6", "5.2.1")),
    Rule("bad domain (code)", HARD, ("5.1.2", "5.1.10", "5.4.4")),
    Rule("bad sender (code)", BLOCK, ("5.1.7", "5.1.8")),
    Rule("mailbox full (code)", SOFT, ("5.2.2",)),
    Rule("message too big (code)", SOFT, ("5.2.3", "5.3.4")),
    Rule("routing loop (code)", SOFT, ("5.4.6",)),
    Rule("security or policy (code)", BLOCK, ("5.7.*",)),
    # --- weak hard texts: often, but not only, a bad address ---------------------------------
    Rule(
        "recipient rejected",
        HARD,
        pattern=r"mailbox (?:is )?unavailable|recipient address rejected|invalid address",
    ),
    Rule("address status (code)", HARD, ("5.1.*",)),
]


def rules_insert(rule: Rule, *, before: str) -> None:
    """Put `rule` into RULES ahead of the rule named `before` (for app start-up code)."""
    names = [existing.name for existing in RULES]
    RULES.insert(names.index(before), rule)


def bounce_class_of(*, enhanced: str, text: str) -> tuple[str, str]:
    """(class, rule name) of a refusal; soft when no rule matches."""
    for rule in RULES:
        if rule.matches(enhanced, text):
            return rule.bounce_class, rule.name
    return SOFT, ""


def classify(*, code: int | None, enhanced: str = "", text: str = "") -> Classification:
    """The fate of one recipient from a reply (code, enhanced code, text).

    A missing enhanced code is read from the text. Without a reply code the enhanced
    code's class decides, and with neither the report is taken as a failure (a DSN that
    says only what went wrong).
    """
    enhanced = enhanced or enhanced_code_of(text)
    family = code // 100 if code is not None else int(enhanced[0]) if enhanced else 5
    if family == 2:
        return Classification("sent")
    if family != 5:
        # 4xx and anything unexpected: try again later. The rule still names what the
        # reply was about, so that shaping can slow down on a reputation deferral.
        return Classification("deferred", "", bounce_class_of(enhanced=enhanced, text=text)[1])
    bounce_class, rule = bounce_class_of(enhanced=enhanced, text=text)
    return Classification("bounced", bounce_class, rule)
