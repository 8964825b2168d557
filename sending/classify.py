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

import functools
import re
from dataclasses import dataclass

HARD, SOFT, BLOCK, UNKNOWN = "hard", "soft", "block", "unknown"

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")


_REPLY_CODE = re.compile(r"(?<![\w.#:/-])([245]\d\d)(?=[ -]|$)(?!-\d)")


def enhanced_code_of(text: str) -> str:
    """The first RFC 3463 enhanced status code in a reply text ("5.1.1"), or ""."""
    match = _ENHANCED.search(text or "")
    return ".".join(match.groups()) if match else ""


def status_refined(status: str, text: str) -> str:
    """The most specific enhanced code for a status and the text that explains it.

    A generic status ("5.0.0", or a "5.1.0" wrapping the remote's "5.1.1", as IronPort and
    Exchange write) gives way to the first code of the text that refines it; an absent
    status is the text's first code.
    """
    codes = [".".join(match.groups()) for match in _ENHANCED.finditer(text or "")]
    if not status:
        return codes[0] if codes else ""
    if status.endswith(".0.0"):
        # a wrapper's own generic "5.1.0 - Unknown address error" gives way to the remote's
        # specific "5.7.1" quoted after it
        return next(
            (code for code in codes if not code.endswith(".0")),
            next((code for code in codes if not code.endswith(".0.0")), status),
        )
    if status.endswith(".0"):
        prefix = status[:-1]
        return next((code for code in codes if code.startswith(prefix) and code != status), status)
    return status


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

    def matches(self, enhanced: str, text: str, context: str = "") -> bool:
        """Whether the code and the text (or `context`, read as if it followed the text)
        match."""
        if self.codes and not any(_code_matches(code, enhanced) for code in self.codes):
            return False
        regex = self._regex  # type: ignore[attr-defined]
        if regex is None:
            return True
        return _found(regex, text) or (bool(context) and _found(regex, context))


@functools.lru_cache(maxsize=1024)
def _found(regex: re.Pattern, text: str) -> bool:
    """A rule's search, cached: the recipients of one bounce message share its context
    (its own words, read for each of them) and often their reply, and a search of every
    rule costs microseconds per character."""
    return regex.search(text) is not None


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
            r"|\b(?:block|black)listed|\brbl\b|\bdnsbl|(?<!not )\blisted (?:at|on|in|by)\b"
            r"|cbl\.abuseat|uceprotect|\bpsbl\b|\bivmSIP|\bbarracudacentral"
            r"|\bS3150\b|\bS3140\b|banned sending ip|dnsbl-lookup|spamcop\.net/bl"
            r"|\(BL\)|\[BL\d\d\]"
        ),
    ),
    Rule(
        "reputation",
        BLOCK,
        pattern=(
            r"reputation|\bsender score|\bTSS\d\d|\bcomplaints?\b|unexpected volume"
            r"|rate limit|too many (?:messages|connections)|sending rate|receiving mail at a rate"
            r"|\brate[- ]limited|\bthrottl|\bTS0\d\b"
            r"|too many (?!hops\b|recipients\b|messages (?:on|in) )\w+"
            r"|temporarily (?:deferred|rate|limited)|\btoo (?:fast|frequent)"
            r"|(?:daily|hourly) (?:relay |sending |message )?(?:quota|limit)"
            r"|(?:relay|sending) (?:quota|limit) (?:reached|exceeded)"
        ),
    ),
    Rule(
        "spam or content",
        BLOCK,
        pattern=(
            r"\bspam|unsolicited|\bbulk mail|\bcontent (?:rejected|filter)|message content"
            r"|\bvirus|malware|phish|suspicious|\buce\b|junk ?mail|looks like spammer"
        ),
    ),
    Rule(
        "authentication",
        BLOCK,
        pattern=r"\bdmarc\b|\bspf\b|\bdkim\b|unauthenticated|not authenticated"
        r"|sender policy framework|authentication (?:required|failed)",
    ),
    Rule(
        "sender or relay refused",
        BLOCK,
        pattern=(
            r"sender address rejected|sender (?:is )?(?:denied|rejected|blocked)"
            r"|sender verif\w{0,12} failed|verification failed for|domain of sender|bad sender"
            r"|relay(?:ing)? (?:access )?(?:denied|not permitted|not allowed)"
            r"|unable to relay|not permitted to relay|client host rejected|reverse dns"
            r"|\bptr\b|\brdns\b|\bhelo\b|\behlo\b|not allowed to send"
            r"|sender (?:e-?mail )?address (?:is )?rejected"
            r"|bogus mail from|null sender|empty envelope sender|unroutable sender|\bbatv\b"
            r"|sender not pre-approved|sender is spammer|mail from not owned|third-party dsns"
            r"|sender domain (?:is empty|must exist|not found)|backscatter|we do not relay"
            r"|cannot resolve your (?:address|hostname)|cannot find your hostname"
            r"|may not be mail exchanger|dynamic ip|generic dns|open proxy|confirm this mail server"
            r"|not currently accepting mail from your ip|ip name lookup failed|\bgo away\b"
        ),
    ),
    Rule(
        "policy",
        BLOCK,
        pattern=r"\bpolic(?:y|ies)\b|\bblocked\b|\bprohibited\b|administrative prohibition"
        r"|recipient preferences|not accepting (?:any )?mail|only accepting mail from"
        r"|refused to receive|user reject|permission to (?:post|send)",
    ),
    # --- soft: the mailbox exists but cannot take this message now -------------------------
    Rule(
        "mailbox full",
        SOFT,
        pattern=(
            r"mailbox (?:is )?full|over ?quota|quota (?:exceeded|full)"
            r"|exceed\w{0,10} (?:the |its |his )?(?:storage|quota)|insufficient (?:system )?storage"
            r"|out of storage"
            r"|mailbox size limit|storage (?:space|limit)|not enough (?:disk |storage )?space"
            r"|over (?:the |their |his |her |its |allowed |storage |disk )*quota"
            r"|(?:mail ?box|inbox|account|disk|mail ?folder)\b[^.\n]{0,30}"
            r"\b(?:is full|full\b|quota)"
            r"|quota\b[^.\n]{0,20}\b(?:exceed|reached|full|violation)|full mailbox"
            r"|\bmailbox\b[^.]{0,15}exceed|exceed\w{0,10}[^.\n]{0,30}\b(?:storage|quota)\b"
            r"|\bdisc quota|enough space|space has been used up|exceeding receiving limits"
            r"|too many messages (?:on|in) "
            r"|bo[iî]te (?:aux lettres )?(?:du destinataire )?pleine|casella (?:postale )?piena"
            r"|buz[oó]n (?:lleno|completo)|caixa (?:postal )?(?:cheia|lotada)"
            r"|postfach (?:ist )?voll"
        ),
    ),
    Rule(
        "message too big",
        SOFT,
        pattern=(
            r"message (?:size )?(?:too (?:big|large)|exceeds)|size (?:limit|exceeds)"
            r"|too much mail data|message length exceeds|exceeds (?:the )?maximum|too large"
        ),
    ),
    # a limit of the message, like its size (X.5.3): neither the address nor our reputation
    Rule("too many recipients", SOFT, pattern=r"too many recipients"),
    Rule("mail loop", SOFT, pattern=r"mail loop|loop detected|too many hops|hop count"),
    Rule(
        "temporary dns failure",
        SOFT,
        pattern=r"host not found, try again|temporary (?:dns|lookup|name ?server) (?:failure|error)"
        r"|dns (?:lookup )?(?:timeout|temporary)|\bservfail\b",
    ),
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
            r"|recip\w{0,20}notfound|unknown (?:local[- ]part|mailbox|address|account)"
            r"|no account (?:by|for)"
            r"|no such (?:person|account)|not a known user|\bnot exists?\b|\binactive\b"
            r"|(?:account|mailbox|address|user|recipient)\b[^.\n]{0,40}\b(?:deactivated|suspended"
            r"|terminated|deleted|discontinued|no longer)"
            r"|(?:account|mailbox) (?:has been |is |was )?(?:closed|expired)"
            r"|(?:address|account|mailbox) (?:couldn't|could not|can't|cannot) be found"
            r"|this address no longer accepts mail|invalid (?:e-?mail )?(?:user|account)\b"
            r"|bad (?:destination )?(?:mailbox|recipient)|recipient (?:is )?(?:not local|invalid)"
            r"|destination addresses? (?:were|was|is) unknown|not our customer"
            r"|user (?:is )?not (?:found|listed|here|known|registered)|no valid recipients?"
            r"|not listed in (?:the )?(?:public|domino|address|directory)"
            r"|address (?:is )?(?:invalid|not valid|not present)|can'?t accept user"
            r"|not a valid user|not a local address|not an active address|mailbox (?:is )?invalid"
            r"|no mail ?box (?:available|found|by that name|here)|no such (?:address|person)"
            r"|recipient (?:does not exist|not exist|not ok|is not accepted)|badrcptto"
            r"|badrecipientto|validrcptto|envelope recipient has been denied|no one at this address"
            r"|(?:wrong|no longer valid)\b[^.\n]{0,20}address|address\b[^.\n]{0,20}no longer valid"
            r"|missing home directory|user not (?:active|exist)|utilisateur inconnu"
            r"|nessun utente|no existe (?:dicha persona|ese usuario)|unknown virtual user"
            r"|non-?existent user|unknown e-?mail address|user \S+ (?:was not found|unknown)"
            r"|\bis (?:currently )?suspended|deactivated mailbox|mailbox is frozen|user suspended"
            r"|(?:recipient|user|account|address) \S+ (?:was )?not found"
            # Postfix access maps and Microsoft 365 refuse unknown recipients this way
            r"|recipient address rejected: access denied"
            # the same in the languages bounces are written in most
            r"|usu[aá]rio (?:inexistente|desconhecido)"
            r"|usuario (?:desconocido|inexistente|no existe)"
            r"|utente (?:inesistente|sconosciuto)|destinatario (?:inesistente|sconosciuto)"
            r"|benutzer (?:ist )?unbekannt|unbekannte[rn]? (?:empf[aä]nger|benutzer)"
            r"|onbekende (?:gebruiker|ontvanger)|destinataire inconnu|adresse inconnue"
            r"|(?:postfach|empf[aä]nger|adresse|mailbox|benutzer) existiert nicht"
            r"|(?:utilisateur|destinataire|adresse|bo[iî]te)[^.\n]{0,20} n'existe pas"
            r"|(?:destinatario|usuario|buz[oó]n|cuenta) no existe"
            r"|(?:caixa|conta|usu[aá]rio) n[aã]o existe"
            r"|(?:utente|casella|indirizzo) non esiste"
        ),
    ),
    Rule(
        "domain unknown",
        HARD,
        pattern=(
            r"no such domain|domain (?:name )?(?:not found|does ?n[o']t exist)"
            r"|host or domain name not found|unrouteable|unroutable|null mx"
            r"|host not found|name service error|\bunknown host|host unknown|no such host"
            r"|domain (?:is )?(?:invalid|unknown)|\bno (?:mx|mail exchangers?)\b(?! record for)"
            r"|\bnxdomain\b|non-?existent domain|does not accept (?:e-?)?mail"
            r"|domain (?:couldn't|could not) be found|name or service not known"
            r"|domain (?:mentioned in email address )?is unknown|(?:recipient )?domain must exist"
            r"|unknown domain|account or domain may not exist"
            r"|host (?:/domain )?does not accept mail"
            r"|no mx records? (?:found )?for|domain is not reachable"
            r"|mx records? points? to non-?existent hosts?"
            r"|(?:does|do) not (?:appear|seem) to be registered|domain (?:is )?not registered"
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
        pattern=r"mailbox (?:is )?(?:currently )?(?:unavailable|not available)"
        r"|recipient address rejected|invalid address",
    ),
    Rule("address status (code)", HARD, ("5.1.*",)),
    # --- soft: the message could not get there in time (reported by DSNs) -------------------
    Rule(
        "timeout or network",
        SOFT,
        pattern=(
            r"time(?:d)? ?out|\bexpired\b|retry time|no answer from host|could not connect"
            r"|connection (?:refused|reset|dropped|lost|closed|failed)|unable to connect"
            r"|failed to connect|lost connection|no route to host|network (?:is )?unreachable"
            r"|host (?:is )?unreachable|did not accept our requests? to connect|giving up"
            r"|could not be delivered (?:within|for|in)"
            r"|delivery (?:time|period) (?:expired|exceeded)"
            r"|server did not respond|queue too long|queue period|has not been collected"
            r"|could not find a gateway|network error|temporary failure in name resolution"
        ),
    ),
    Rule(
        "remote system error",
        SOFT,
        pattern=(
            r"configuration error|local error in processing|internal (?:server )?error"
            r"|queue file write error|temporary local problem|misconfigured|interrupted system call"
            r"|can't create user output file|loops back to myself|forwarding loop"
            r"|system (?:is )?(?:busy|overloaded|full)|insufficient system resources"
        ),
    ),
]


# Read after RULES, for what bounce messages report only (a synchronous 4xx keeps no hint):
# X.4.X network and routing, X.3.X the remote mail system are not about the address.
FEEDBACK_CODE_RULES: list[Rule] = [
    Rule("network or mail system (code)", SOFT, ("5.4.*", "5.3.*")),
    Rule("media or content (code)", BLOCK, ("5.6.*",)),
]


def rules_insert(rule: Rule, *, before: str) -> None:
    """Put `rule` into RULES ahead of the rule named `before` (for app start-up code)."""
    names = [existing.name for existing in RULES]
    RULES.insert(names.index(before), rule)


def rule_of(*, enhanced: str, text: str, context: str = "") -> Rule | None:
    """The first rule of RULES that matches, or None."""
    for rule in RULES:
        if rule.matches(enhanced, text or "", context):
            return rule
    return None


def bounce_class_of(*, enhanced: str, text: str) -> tuple[str, str]:
    """(class, rule name) of a refusal; soft when no rule matches."""
    rule = rule_of(enhanced=enhanced, text=text)
    return (rule.bounce_class, rule.name) if rule else (SOFT, "")


def feedback_class_of(
    *,
    enhanced: str = "",
    text: str = "",
    code: int | None = None,
    delayed: bool = False,
    context: str = "",
) -> tuple[str, str]:
    """(class, rule name) of a recipient a bounce message reports (DSN or not).

    Unlike a synchronous reply, a failure that matches no rule and carries no 4.x.x code
    is "unknown": the report said nothing we can act on. A delayed recipient is soft, or
    block when the reason is about us (reputation, rate, policy, a 421 4.7.x throttle).
    A generic enhanced code gives way to a more specific one of the text (`status_refined`).
    `context` (the words around the reply) is read as if it followed the text; each
    rule's search of it is cached, so a bounce naming many recipients reads it once.
    """
    rule_text = text or ""
    text = f"{rule_text}\n{context}" if context else rule_text
    enhanced = status_refined(enhanced, text)
    rule = rule_of(enhanced=enhanced, text=rule_text, context=context) or next(
        (rule for rule in FEEDBACK_CODE_RULES if rule.matches(enhanced, rule_text, context)),
        None,
    )
    if delayed:
        # still being retried: soft, unless the words (or a 421 4.7.x, the usual throttle)
        # say the receiver is holding us back
        about_us = rule is not None and rule.bounce_class == BLOCK
        if about_us and not rule.pattern:
            about_us = bool(re.search(r"(?<![\d.])421(?![\d.])", text or ""))
        return (BLOCK if about_us else SOFT), rule.name if rule else ""
    if rule:
        return rule.bounce_class, rule.name
    if code is None:
        reply = _REPLY_CODE.search(text or "")
        code = int(reply.group(1)) if reply else None
    family = str(code)[0] if code else enhanced[:1]
    return (SOFT if family == "4" else UNKNOWN), ""


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
