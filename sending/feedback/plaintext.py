"""Non-standard bounces: the recipients, SMTP replies and remote hosts that the
human-readable text of a bounce states (Postfix, Exim, qmail, Sendmail, Gmail, Exchange /
Outlook.com, Yahoo, Domino, ...), read by shape rather than by vendor.

The text is first cut where the quoted original begins; an address then counts as a
recipient when its line has the shape of a recipient line (alone on the line, "<addr>:",
"RCPT TO:<addr>", "addr... User unknown", next to an SMTP reply or a failure phrase, or
just below an intro such as "the following address(es) failed"). Addresses that are not
recipients are dropped: the sender side of a transcript, system mailboxes, VERP addresses
and Message-IDs.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, field

from sending.feedback.fields import ADDRESS, reply_text

# Patterns here read lines of at most MAX_LINE_CHARS (sending.feedback.mime.bounded) and
# are written so that none backtracks more than linearly: no two adjacent quantifiers
# over overlapping classes ("[ \t>|]*[-=_*~#]*[ \t]*" on a line of blanks is quadratic),
# windows bounded ("{0,80}"), searches that could start anywhere anchored by a literal.

# Where the quoted original begins in a bounce's text.
_ORIGINAL_MARKER = re.compile(
    r"^[ \t>|]*(?:[-=_*~#]+[ \t]*)?(?:"
    r"original message(?: follows| headers?| text| details)?"
    r"|(?:a )?copy of (?:the |your )?(?:original )?message"
    r"|below this line is a copy of the message|this is a copy of the message"
    r"|(?:returned|undelivered|unsent|rejected) (?:mail|message)"
    r"(?: follows| below| text| headers?)?"
    r"|message text follows|(?:text|headers?) of (?:the )?(?:original |returned )?message"
    r"|start of returned message|returned mail follows|your message reads"
    r"|included is a copy of the message header|message headers follow|unsent message below"
    r"|the original message (?:headers? )?(?:is|are|was) (?:attached|included|below)"
    r"|original message headers"
    r")\b[^\n]{0,80}$"
    r"|^(?:Return-Path|Received|DKIM-Signature|Received-SPF|Authentication-Results"
    r"|ARC-Seal|X-Original-To|Delivered-To)[ \t]*:[^\n]*$",
    re.I | re.M,
)
_INTRO = re.compile(
    r"following (?:e-?mail )?"
    r"(?:recipients?|address(?:es)?|\(?address\(es\)\)?|destinations?|users?)"
    r"|(?:recipients?|address(?:es)?) (?:or groups )?(?:had|has) (?:permanent )?(?:fatal )?errors?"
    r"|delivery (?:has )?failed to|failed recipients?|could not be delivered to"
    r"|unable to deliver (?:your )?(?:message )?to|undeliverable (?:to|address)"
    r"|did not reach the following|(?:was|were) not delivered to|message to .{0,80} "
    r"(?:couldn't|could not|can't|cannot|wasn't|was not) be delivered"
    r"|address(?:es)? failed|recipient address(?:es)?:|invalid recipients?:|unknown users?:"
    r"|wasn't able to deliver|was not able to deliver|permanent(?:ly)? fail",
    re.I,
)
_FAILURE_WORDS = re.compile(
    r"fail|undeliver|not (?:be )?delivered|n't (?:be )?delivered|unable to deliver|could ?n[o']t"
    r"|reject|unknown|does ?n[o']t exist|no such|invalid|not found|\bfull\b|quota|refused|denied"
    r"|disabled|bounced|error|permanent|unavailable|unrouteable|not exist|inactive|suspended"
    r"|not listed|exceed|too large|blocked|expired",
    re.I,
)
# An SMTP reply: a 3-digit code (group 1) or, failing that, an enhanced code ("#5.1.1").
_REPLY = re.compile(
    r"(?<![\w.:/+=-])([45]\d\d)(?:-(?=[45]\.\d|[A-Za-z<\[])|[ \t]+(?=\S)|:[ \t]|\s*$)"
    r"|(?<![\w.])#?[45]\.\d{1,3}\.\d{1,3}(?![\d.]\d)"
)
_RESPONSE_MARKER = re.compile(
    r"^\s*(?:the )?(?:error that the other server returned was"
    r"|response (?:from the remote server )?was|response was|remote (?:host|server) said"
    r"|reason|diagnostic[- ]code|error|the error (?:was|is)|remote server replied"
    r"|server replied|smtp error|because|(?:for )?the following reasons?"
    r"|(?:error|failure|delivery) (?:details|description|reason)|details|problem)\s*(?::\s*)?$",
    re.I,
)
_REMOTE = [
    re.compile(r"\bhost\s+([\w-]+(?:\.[\w-]+)+)\.?\s*\[", re.I),
    re.compile(r"\bremote[- ]mta\s*:?\s*(?:dns\s*;\s*)?([\w-]+(?:\.[\w-]+)+)", re.I),
    re.compile(
        r"\b(?:while talking to|talking to|conversation with|connecting to)"
        r"\s+([\w-]+(?:\.[\w-]+)+)",
        re.I,
    ),
    re.compile(r"\bremote server (?:at )?([\w-]+(?:\.[\w-]+)+)\s*\(", re.I),
    re.compile(r"\bby\s+([\w-]+(?:\.[\w-]+)+)\.?\s*\[\d", re.I),
    re.compile(r"\bhost\s+([\w-]+(?:\.[\w-]+)+\.[a-z]{2,})\b", re.I),
]
_SYSTEM_LOCAL = re.compile(
    r"^(?:post[-_]?master|mailer[-_.]?daemon|mail[-_.]?daemon|maildaemon|mdaemon|double-bounce|"
    r"microsoftexchange[0-9a-f]{32}|(?:bounces?|unsubscribe)\+.*|nobody|noreply-dmarc-support)$",
    re.I,
)
_SENDER_CONTEXT = re.compile(
    r"(?:mail from|from|sender|return-path|reply-to|message-id|references|in-reply-to"
    r"|envelope-from|mailfrom|header\.from|errors-to|resent-from|x-sender|helo|ehlo|by|"
    r"content-id|list-unsubscribe|smtp\.mailfrom|originator|id)\s*(?:[:=]\s*)?(?:[<\"'(]\s*)?$",
    re.I,
)
_HEADER_LINE = re.compile(
    r"^\s*(?:from|sender|reply-to|return-path|message-id|references|in-reply-to|date|subject|cc"
    r"|received|dkim-signature|list-unsubscribe|errors-to|to|x-[\w-]+)\s*:",
    re.I,
)
_DELAYED = re.compile(
    r"\bdelayed\b|will (?:continue to |keep )?(?:retry|try)|still (?:be )?(?:trying|retrying)"
    r"|has not (?:yet )?been delivered|not yet been delivered|will be retried|warning: "
    r"|this is (?:just )?a warning|no action is required|retry (?:for|until) \d",
    re.I,
)
_PERMANENT = re.compile(
    r"permanent|fatal|gave up|giving up|will not be retried|not be retried|could not be delivered"
    r"|couldn't be delivered|wasn't delivered|undeliverable|failed",
    re.I,
)


# The start of a recipient's block in a list ("<addr>: ...", "addr: ...").
_RECIPIENT_START = re.compile(r"^\s*<?[^\s<>@]+@[^\s<>@]+?>?\s*:(?:\s|$)")
# A label just before an address ("Recipient :", "받는 사람 :"), in any language.
_LABEL_BEFORE = re.compile(r"[^\W\d][^:\uff1a<>@]{0,30}[:\uff1a]\s*(?:[<\[\"']\s*)?$")
_RCPT_TO_BEFORE = re.compile(r"rcpt to:?\s*<?$")
_RCPT_TO_ARROWS = re.compile(r"^\s*[<>]{3}\s*rcpt", re.I)
_ONLY_PUNCTUATION = re.compile(r"[<\s*•·\-\"'(]*(?:mailto:)?")
_REPEATED_ADDRESS = re.compile(r"[(<\[]\s*(?:mailto:|smtp:)?([^\s()<>\[\]]{1,320})\s*[)>\]]", re.I)
_SENDER_AFTER = re.compile(r"^\W{0,6}(?:[\w ]{0,20} )?sender\b", re.I)
_RECIPIENT_WORD_BEFORE = re.compile(
    r"(?:^|\s)(?:to|for|recipient|address|user|mailbox)\s*(?::\s*)?<?\"?$", re.I
)
_HEADING_LINE = re.compile(r"^\s*[-=*_#]{3}.*[-=*_#]{3}\s*$")
_DELAY_SUBJECT = re.compile(r"\bdelay|\bwarning\b|still being retried|not delivered yet", re.I)
_FAILURE_SUBJECT = re.compile(r"fail|undeliver|returned", re.I)

# At most this many recipients per message (we send each message to one recipient: more
# is a list or an attack), and this many address occurrences read to find them.
MAX_FINDINGS = 100
MAX_ADDRESS_MATCHES = 2000
# The text read around an address to judge it.
_CONTEXT_CHARS = 256
# The lines naming one address that describe() reads for its diagnostic.
_OCCURRENCES_READ = 10


@dataclass
class TextFinding:
    address: str
    score: int
    evidence: str
    diagnostic: str = ""
    remote_mta: str = ""
    lines: list[int] = field(default_factory=list)


def split_original(text: str) -> tuple[str, str]:
    """(the report, the quoted original) of a bounce's text."""
    match = _ORIGINAL_MARKER.search(text or "")
    if not match:
        return text or "", ""
    return text[: match.start()], text[match.start() :]


# An address starts only where a token does (the lookbehind) and its parts hold no "@", so
# a run of thousands of non-blank characters is read once, not from each of its positions.
_EXPANDED = re.compile(
    r"(?<![^\s<>()\"])<?[^\s<>()\"@]{1,64}@[^\s<>()\"@]{1,255}>?[ \t]*"
    r"\(expanded from:?[ \t]*<?([^\s<>()\"@]{1,64}@[^\s<>()\"@]{1,255})>?\)",
    re.I,
)


def expansions_resolved(report: str) -> str:
    """ "<local@host> (expanded from <addr>)" as "<addr>": the address we sent to, not the
    alias or forward the receiver expanded it to (Postfix, Sendmail)."""
    if "(expanded from" not in (report or "").lower():
        return report or ""
    return _EXPANDED.sub(r"<\1>", report)


def later_sections(quoted: str) -> list[str]:
    """The text after the first marker, cut at each further marker: where a bounce that a
    person forwarded ("-----Original Message-----") states its recipients."""
    starts = [match.start() for match in _ORIGINAL_MARKER.finditer(quoted or "")]
    bounds = [*starts, len(quoted or "")]
    sections = [quoted[start:end] for start, end in itertools.pairwise(bounds)]
    # a section is its marker line and what follows; header lines make sections of one line
    return [section for section in sections if section.count("\n") > 2][:20]


def is_system_address(address: str) -> bool:
    return bool(_SYSTEM_LOCAL.match(address.rpartition("@")[0]))


def _looks_like_message_id(address: str) -> bool:
    local = address.rpartition("@")[0]
    digits = sum(ch.isdigit() for ch in local)
    return (
        any(ch in local for ch in "$%=")
        or (len(local) >= 20 and digits >= 6)
        or (len(local) >= 28 and "." in local and digits >= 4)
    )


class _Line:
    """One line of a report, with what the scoring of each of its addresses asks about
    the whole line worked out once (a line may hold thousands of addresses)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._reply: bool | None = None
        self._failure: bool | None = None
        self.is_header = bool(_HEADER_LINE.match(text))
        self.indent = len(text) - len(text.lstrip())
        arrows = _RCPT_TO_ARROWS.match(text)  # ">>> RCPT TO:<addr>" of a transcript
        self.rcpt_arrows_end = arrows.end() if arrows else None

    @property
    def has_reply(self) -> bool:
        if self._reply is None:
            self._reply = bool(_REPLY.search(self.text))
        return self._reply

    @property
    def has_failure(self) -> bool:
        if self._failure is None:
            self._failure = bool(_FAILURE_WORDS.search(self.text))
        return self._failure


def _without_prefix(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text[: len(prefix)].lower() == prefix.lower() else text


def _line_score(line: _Line, start: int, end: int, address: str) -> tuple[int, str]:
    """How much the line around an address says the address is a recipient (what is
    next to it decides: only _CONTEXT_CHARS either side are read)."""
    text = line.text
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    after = text[end : end + _CONTEXT_CHARS]
    stripped_before = before.strip().lower()
    arrows_end = line.rcpt_arrows_end
    if _RCPT_TO_BEFORE.search(stripped_before) or (arrows_end is not None and arrows_end <= start):
        return 4, "RCPT TO"
    if _SENDER_CONTEXT.search(before) or line.is_header:
        # "To:" of a quoted header block is not a recipient line of the report
        return -1, ""
    tail = after.lstrip(">").strip()
    alone = start - _CONTEXT_CHARS <= line.indent  # nothing but blanks before the window
    if alone and _ONLY_PUNCTUATION.fullmatch(stripped_before) is not None:
        if tail.startswith(":") or tail.startswith("..."):
            return 4, "recipient line"
        rest = tail.lstrip().lstrip(")]>\"'")
        repeated = _REPEATED_ADDRESS.match(rest)
        if repeated and repeated.group(1).lower() == address.lower():
            rest = rest[repeated.end() :]
        rest = _without_prefix(rest, f"<mailto:{address}>")
        if not rest.strip(" .,;:"):
            return 3, "address line"
        if _REPLY.search(rest) or _FAILURE_WORDS.search(rest):
            return 3, "address with reason"
    if _SENDER_AFTER.match(tail):
        return -1, ""  # "<x>... Sender ok", "<x>: Sender address rejected": the sender
    if line.has_reply:
        return 2, "reply line"
    if _RECIPIENT_WORD_BEFORE.search(before) and line.has_failure:
        return 3, "failure sentence"
    if line.has_failure:
        return 1, "failure words"
    return 0, ""


def _excluded(address: str, excluded: set[str]) -> bool:
    lowered = address.lower()
    return lowered in excluded or _looks_like_message_id(lowered)


def _labelled(lines: list[str], index: int, before: str) -> bool:
    """An address after a label ("To :", "Empfänger:", "받는 사람 :") whose next lines
    state a reply or a failure: the recipient of a bounce written in any language."""
    if not _LABEL_BEFORE.search(before) or _HEADER_LINE.match(lines[index]):
        return False
    following = [line for line in lines[index + 1 : index + 4] if line.strip()][:2]
    return any(_REPLY.search(line) or _FAILURE_WORDS.search(line) for line in following)


def recipients_in(report: str, *, excluded: set[str]) -> list[TextFinding]:
    """Recipient addresses stated by a bounce's report text, in the order of the text
    (at most MAX_FINDINGS, from the first MAX_ADDRESS_MATCHES addresses)."""
    lines = report.split("\n")
    findings: dict[str, TextFinding] = {}
    intro_until = -1
    budget = MAX_ADDRESS_MATCHES
    for index, text in enumerate(lines):
        if budget <= 0:
            break
        if _INTRO.search(text):
            intro_until = index + 12
        line = _Line(text)
        for match in ADDRESS.finditer(text):
            budget -= 1
            if budget < 0:
                break
            address = match.group(1)
            if _excluded(address, excluded):
                continue
            score, evidence = _line_score(line, match.start(1), match.end(1), address)
            if score < 0:
                continue
            if score == 0 and _labelled(
                lines, index, text[max(0, match.start(1) - _CONTEXT_CHARS) : match.start(1)]
            ):
                score, evidence = 2, "labelled address"
            if index <= intro_until and score >= 0:
                score, evidence = max(score, 2) + 1, evidence or "after intro"
            if is_system_address(address) and score < 4:
                # postmaster@, mailer-daemon@ ... are recipients only when plainly listed
                score = 0 if score < 3 else score - 1
            key = address.lower()
            finding = findings.get(key)
            if finding is None:
                findings[key] = TextFinding(address, score, evidence, lines=[index])
            else:
                if finding.lines[-1] != index:
                    finding.lines.append(index)
                if score > finding.score:
                    finding.score, finding.evidence = score, evidence
    ranked = sorted(findings.values(), key=lambda item: -item.score)
    if not ranked:
        return []
    best = ranked[0].score
    threshold = 2 if best >= 2 else best
    if threshold <= 0:
        return []
    chosen = [item for item in ranked if item.score >= threshold][:MAX_FINDINGS]
    return sorted(chosen, key=lambda item: item.lines[0])


def _join(lines: list[str]) -> str:
    """Lines of one SMTP reply (multi-line "550-5.1.1 ..." included) as one line."""
    joined = reply_text(" ".join(line.strip() for line in lines))
    joined = joined.strip("'\"` ")
    if joined.endswith(")") and joined.count("(") < joined.count(")"):
        joined = joined[:-1].rstrip()
    return joined[:1000]


def _paragraph(lines: list[str], start: int, column: int = 0, limit: int = 8) -> str:
    """The reply starting at lines[start][column:], with the lines that continue it: up to
    a blank line, a line indented less (the next block of an Exim list), or an address
    alone on its line (the next recipient)."""
    collected = [lines[start][column:]]
    indent = _indent(lines[start])
    for line in lines[start + 1 : start + limit]:
        if not line.strip() or _ORIGINAL_MARKER.match(line) or _INTRO.search(line):
            break
        if _indent(line) < indent or ADDRESS.fullmatch(line.strip().strip("<>:;,. ")):
            break
        if _indent(line) <= indent and _RECIPIENT_START.match(line):
            break  # "<next@example.org>: host ... said:": the next recipient's block
        collected.append(line)
    return _join(collected)


def _reply_column(line: str) -> int | None:
    """Where the SMTP reply of a line starts; a bare enhanced code ("Sorry, no mailbox
    here by that name. (#5.1.1)") makes the whole line the reply."""
    match = _REPLY.search(line)
    if not match:
        return None
    if match.group(1):
        return match.start(1)
    return len(line) - len(line.lstrip())


def reply_near(
    lines: list[str], start: int, stop: int, columns: dict[int, int | None] | None = None
) -> str:
    """The first SMTP reply (code and its text) in lines[start:stop], on one line.
    `columns` keeps each line's reply column across calls on the same lines."""
    columns = {} if columns is None else columns
    for index in range(start, min(stop, len(lines))):
        line = lines[index]
        if index not in columns:
            columns[index] = _reply_column(line)
        column = columns[index]
        if column is not None:
            return _paragraph(lines, index, column)
        if _RESPONSE_MARKER.match(line):
            following = index + 1
            while following < len(lines) and not lines[following].strip():
                following += 1
            if following < min(stop + 4, len(lines)):
                return _paragraph(lines, following)
    return ""


def remote_mta_in(text: str) -> str:
    for pattern in _REMOTE:
        match = pattern.search(text or "")
        if match:
            return match.group(1).rstrip(".").lower()
    return ""


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _reason_after(lines: list[str], first: int, address: str) -> str:
    """The words a bounce puts under an address without an SMTP code (Exim's indented
    "retry timeout exceeded", qmail's sentence, Exchange's explanation)."""
    collected: list[str] = []
    base = _indent(lines[first])
    heading = False
    for line in lines[first + 1 : first + 6]:
        if not line.strip():
            if collected:
                break
            continue
        bare = line.strip().strip("<>():;,. ")
        if _HEADING_LINE.fullmatch(line):
            heading = True  # "----- Non-delivered information -----": its text follows
            continue
        if bare.lower() == address.lower() or ADDRESS.fullmatch(bare):
            break
        if _ORIGINAL_MARKER.match(line) or _INTRO.search(line):
            break
        if _indent(line) > base or _FAILURE_WORDS.search(line) or collected or heading:
            collected.append(line)
        else:
            break
    return _join(collected) if collected else ""


def describe(report: str, findings: list[TextFinding]) -> None:
    """Fill each finding's diagnostic and remote MTA from the lines near its address.

    Reads at most 14 lines after each of the first _OCCURRENCES_READ lines naming an
    address, and each line's reply once, so that the work grows with the findings (at
    most MAX_FINDINGS), not with findings times lines."""
    lines = report.split("\n")
    starts = sorted({line for finding in findings for line in finding.lines})
    lowered_lines: dict[int, str] = {}
    columns: dict[int, int | None] = {}

    def lowered_line(index: int) -> str:
        if index not in lowered_lines:
            lowered_lines[index] = lines[index].lower()
        return lowered_lines[index]

    for finding in findings[:MAX_FINDINGS]:
        lowered = finding.address.lower()
        reason = ""
        for first in finding.lines[:_OCCURRENCES_READ]:
            # up to the next line that names another recipient, 14 lines at most
            stop = first + 14
            for at in range(bisect.bisect_right(starts, first), len(starts)):
                other = starts[at]
                if other >= stop:
                    break
                if lowered not in lowered_line(other):
                    stop = other
                    break
            line = lines[first]
            position = lowered_line(first).find(lowered)
            same_line = line[position + len(finding.address) :] if position >= 0 else ""
            column = _reply_column(same_line)
            if column is not None:
                candidate = _paragraph([same_line, *lines[first + 1 : first + 8]], 0, column)
            else:
                candidate = reply_near(lines, first + 1, stop, columns)
            if candidate:
                finding.diagnostic = candidate
                finding.remote_mta = finding.remote_mta or remote_mta_in(
                    "\n".join(lines[first:stop])
                )
                break
            if not reason:
                rest = same_line.strip(" :>)]").lstrip("[(<\"' ")
                if rest and _FAILURE_WORDS.search(rest):
                    reason = _join([rest])
                elif position > 0 and _FAILURE_WORDS.search(line[:position]):
                    # "Unknown user: addr", "Could not be delivered to: <addr>" + reason below
                    reason = _join([line, _reason_after(lines, first, finding.address)])
                else:
                    reason = _reason_after(lines, first, finding.address)
        if not finding.diagnostic and not reason:
            # Lotus Notes and others state the reason just above the address
            first = finding.lines[0]
            above = next(
                (line for line in reversed(lines[max(0, first - 3) : first]) if line.strip()), ""
            )
            if _FAILURE_WORDS.search(above) and not ADDRESS.search(above):
                reason = _join([above])
        if not finding.diagnostic:
            finding.diagnostic = reason


def global_reply(report: str) -> str:
    """The first SMTP reply of the whole report (a bounce naming no recipient)."""
    lines = report.split("\n")
    return reply_near(lines, 0, len(lines))


def is_delayed(subject: str, report: str) -> bool:
    """A delay warning ("will retry", "Delivery Status Notification (Delay)")."""
    if _DELAY_SUBJECT.search(subject):
        return not _FAILURE_SUBJECT.search(subject)
    head = report[:3000]
    return bool(_DELAYED.search(head)) and not _PERMANENT.search(head)
