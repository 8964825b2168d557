"""The small grammar shared by DSNs (RFC 3464) and ARF reports (RFC 5965): blocks of
"Name: value" fields separated by blank lines, values folded over indented lines, and
typed values ("rfc822; user@example.org", "smtp; 550 5.1.1 ...", "dns; mx.example.org").
Written to tolerate what real MTAs send: missing blank lines, repeated groups, comments."""

from __future__ import annotations

import re

from sending.feedback.mime import MAX_LINE_CHARS, bounded, one_line

ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
    r"([\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
    r"@[\w](?:[\w-]{0,62}[\w])?(?:\.[\w](?:[\w-]{0,62}[\w])?)*\.[A-Za-z\u00a1-\uffff]{2,63})"
    r"(?![\w-]|\.[\w-])"
)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,60})[ \t]*:[ \t]*(.*)$")
_TYPE_PREFIX = re.compile(r"^\s*[A-Za-z][\w.-]{0,20}\s*;\s*")
# A new recipient group starts when one of these repeats inside the current group.
_GROUP_STARTS = ("final-recipient", "original-recipient")


def field_blocks(text: str) -> list[dict[str, str]]:
    """Blocks of fields (keys lower-cased, values unfolded to one line)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last_key = ""
    for line in bounded(text).split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            if current:
                blocks.append(current)
            current, last_key = {}, ""
            continue
        if line[:1] in (" ", "\t") and last_key:
            if len(current[last_key]) < MAX_LINE_CHARS:  # thousands of folds: no quadratic join
                current[last_key] = f"{current[last_key]} {line.strip()}".strip()
            continue
        match = _FIELD.match(line)
        if not match:
            last_key = ""
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        if key in _GROUP_STARTS and (key in current or "action" in current or "status" in current):
            blocks.append(current)
            current = {}
        if key in current:
            last_key = ""  # a repeated field (two Original-Rcpt-To): the first one counts
            continue
        current[key] = value
        last_key = key
    if current:
        blocks.append(current)
    return [
        {key: one_line(value)[:MAX_LINE_CHARS] for key, value in block.items()} for block in blocks
    ]


def untyped(value: str) -> str:
    """ "smtp; 550 5.1.1 ..." -> "550 5.1.1 ..."; "dns; mx.example.org" -> "mx.example.org"."""
    return one_line(_TYPE_PREFIX.sub("", value or "", count=1))


def address_of(value: str) -> str:
    """The address of a typed recipient field ("rfc822; <User@Example.org>"), lower-cased
    domain kept as written; "" when there is none."""
    text = untyped(value).strip().strip("\"'")
    match = ADDRESS.search(text)
    return match.group(1).strip(".") if match else ""


_REPLY_HEAD = re.compile(r"^([245]\d\d)[- ]((?:[245]\.\d{1,3}\.\d{1,3})?)\s*")


def reply_text(text: str) -> str:
    """A multi-line SMTP reply on one line: "550-5.1.1 a 550-5.1.1 b 550 5.1.1 c" ->
    "550 5.1.1 a b c"; other text only has its whitespace collapsed."""
    text = one_line(text)
    head = _REPLY_HEAD.match(text)
    if not head:
        return text
    code, enhanced = head.groups()
    repeat = re.escape(code) + r"[- ]" + (re.escape(enhanced) + r"\s*" if enhanced else "")
    rest = re.sub(r"(?:(?<=\s)|^)" + repeat, "", text[head.end() :])
    return one_line(f"{code} {enhanced} {rest}" if enhanced else f"{code} {rest}")


def remote_mta_of(value: str) -> str:
    """A host name from "dns; mx.example.org" / "mx.example.org [192.0.2.1]"."""
    text = untyped(value).strip().strip("[]<>").strip()
    host = text.split()[0] if text.split() else ""
    return host.strip("[]()<>;,").rstrip(".").lower()
