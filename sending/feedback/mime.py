"""Reading a raw inbound message with the standard library, defensively: any bytes parse,
text comes out decoded (transfer encoding and charset) and capped, and walking the MIME
tree is bounded, so that a 10 MB attachment or a malformed tree costs little.

Anyone can mail the listener, so every text the parser's patterns read goes through
`bounded` here: at most MAX_TEXT_CHARS, no line longer than MAX_LINE_CHARS."""

from __future__ import annotations

import binascii
import email
import html
import quopri
import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header
from email.message import Message

MAX_PARSE_BYTES = 2 * 1024 * 1024  # what comes back is read from the head of the message
MAX_TEXT_CHARS = 256 * 1024  # of each text part, and of the texts of a message together
MAX_LINE_CHARS = 4096  # a longer line is cut: no bounce states a recipient past that
MAX_PARTS = 200
MAX_DEPTH = 8

# Content types whose payload is the message that bounced, not the report about it.
ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers")


def message_read(raw: bytes) -> Message:
    """The message of `raw` (compat32 tolerates broken headers best); never raises."""
    if not isinstance(raw, bytes | bytearray):
        raw = bytes(str(raw or ""), "utf-8", "replace")
    head = bytes(raw[:MAX_PARSE_BYTES])
    try:
        return email.message_from_bytes(head, policy=policy.compat32)
    except Exception:
        return email.message_from_string("", policy=policy.compat32)


def bounded(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` cut to `limit` characters and its lines to MAX_LINE_CHARS: the one cap on
    what the parser's regular expressions read, so hostile input stays cheap."""
    text = (text or "")[:limit]
    if len(text) <= MAX_LINE_CHARS:
        return text
    lines = text.split("\n")
    if max(map(len, lines)) <= MAX_LINE_CHARS:
        return text
    return "\n".join(line[:MAX_LINE_CHARS] for line in lines)


def header_text(msg: Message, name: str) -> str:
    """A header decoded (RFC 2047) and unfolded to one line, at most MAX_LINE_CHARS; ""
    when absent or broken."""
    try:
        value = msg.get(name)
    except Exception:
        return ""
    if value is None:
        return ""
    # a folded header may be long: decoding reads only what would be kept
    value = str(value)[: MAX_LINE_CHARS * 4]
    return _header_decoded(value)[:MAX_LINE_CHARS]


def _header_decoded(value: str) -> str:
    try:
        return one_line(_unescaped(str(make_header(decode_header(str(value))))))
    except Exception:  # noqa: S110 - an unknown charset or a broken encoded word: piece by piece
        pass
    try:
        pieces = [
            _decode(chunk, charset) if isinstance(chunk, bytes) else chunk
            for chunk, charset in decode_header(str(value))
        ]
        return one_line(_unescaped("".join(pieces)))
    except Exception:
        return one_line(_unescaped(str(value)))


def _unescaped(text: str) -> str:
    """8-bit bytes the parser kept as surrogates, read as UTF-8 (else replaced)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return text.encode("utf-8", "replace").decode("utf-8", "replace")


def one_line(text: str) -> str:
    """Whitespace runs (folds included) as single spaces, trimmed."""
    return _WHITESPACE.sub(" ", text or "").strip()


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "text/plain"


def report_type(msg: Message) -> str:
    """The report-type parameter of a multipart/report ("delivery-status", ...), or ""."""
    try:
        return str(msg.get_param("report-type", "") or "").strip().lower()
    except Exception:  # a Content-Type broken beyond reading
        return ""


def walk(msg: Message, *, into_originals: bool = True) -> Iterator[tuple[Message, int]]:
    """(part, depth) for every part, depth-first; depth counts message/rfc822 crossed.

    Without `into_originals`, attached messages are yielded but not entered.
    """
    stack: list[tuple[Message, int, int]] = [(msg, 0, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth, nesting = stack.pop()
        seen += 1
        yield part, depth
        if nesting >= MAX_DEPTH:
            continue
        ctype = content_type(part)
        if ctype == "message/delivery-status" or (ctype == "message/rfc822" and not into_originals):
            continue  # a delivery-status payload is header blocks, not parts
        try:
            payload = part.get_payload()
        except Exception:  # noqa: S112 - an unreadable part has no children to walk
            continue
        if not isinstance(payload, list):
            continue
        inner_depth = depth + 1 if ctype == "message/rfc822" else depth
        children = [child for child in payload if isinstance(child, Message)]
        stack.extend((child, inner_depth, nesting + 1) for child in reversed(children))


def _raw_payload_bytes(part: Message, limit: int) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):
        return b""
    text = str(payload or "")
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        chunk = text[: limit * 4 // 3 + 4096]
        out = bytearray()
        for line in chunk.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out += binascii.a2b_base64(line.encode("ascii", "replace"))
            except (binascii.Error, ValueError):
                continue
        return bytes(out[:limit])
    data = text[: limit * 3 if cte == "quoted-printable" else limit]
    try:
        raw = data.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        raw = data.encode("utf-8", "replace")
    if cte == "quoted-printable":
        raw = quopri.decodestring(raw)
    return raw[:limit]


def _decode(raw: bytes, charset: str | None) -> str:
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return raw.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("latin-1")


def part_text(part: Message, limit: int = MAX_TEXT_CHARS) -> str:
    """The decoded text of a single (non-multipart) part, at most `limit` characters;
    HTML is reduced to its text."""
    try:
        raw = _raw_payload_bytes(part, limit)
        try:
            charset = part.get_content_charset()
        except Exception:
            charset = None
        text = _decode(raw, charset)
    except Exception:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if content_type(part) == "text/html":
        text = html_text(text)
    return bounded(text, limit)


# Tag contents exclude "<": a scan from one "<" stops at the next, whatever the markup.
_MAILTO_LINK = re.compile(
    r"<a\b[^<>]{0,500}?href\s*=\s*[\"']?mailto:([^\"'?<>\s]{3,254})"
    r"(?:[\"'?\s][^<>]{0,500})?>(.{0,500}?)</a\s*>",
    re.I | re.S,
)
_TAG = re.compile(r"<[^<>]{0,2000}>")
_INNER_TAG = re.compile(r"<[^<>]{0,500}>")
_LINE_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|tr|li|h\d|table|blockquote)\s*>", re.I)
_HIDDEN_OPEN = re.compile(r"<(script|style|head)\b", re.I)
_HIDDEN_CLOSE = {name: re.compile(rf"</{name}\s*>", re.I) for name in ("script", "style", "head")}
_WHITESPACE = re.compile(r"\s+")


def _mailto_shown(match: re.Match) -> str:
    """A mailto link that shows a name ("Jo Smith"): the name and the address, which an
    NDR written in HTML may give nowhere else."""
    address, shown = match.group(1), match.group(2)
    if "@" in _INNER_TAG.sub("", shown):
        return shown
    return f"{shown} &lt;{html.escape(html.unescape(address))}&gt;"  # unescaped after tags go


def _without_hidden(markup: str) -> str:
    """Markup without its script, style and head elements. A lazy `<script.*?</script>`
    rescans the rest of the text from every unclosed opener; this looks for each closer
    once."""
    out: list[str] = []
    position = 0
    unclosed: set[str] = set()
    while match := _HIDDEN_OPEN.search(markup, position):
        name = match.group(1).lower()
        close = None if name in unclosed else _HIDDEN_CLOSE[name].search(markup, match.end())
        if close is None:
            unclosed.add(name)
            out.append(markup[position : match.end()])
            position = match.end()
            continue
        out.append(markup[position : match.start()] + " ")
        position = close.end()
    out.append(markup[position:])
    return "".join(out)


def html_text(markup: str) -> str:
    """Visible text of HTML, with block ends as line breaks."""
    markup = _without_hidden(markup)
    markup = _MAILTO_LINK.sub(_mailto_shown, markup)
    markup = _LINE_BREAK.sub("\n", markup)
    markup = _TAG.sub(" ", markup)
    text = html.unescape(markup)
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


def headers_text(msg: Message) -> str:
    """The headers of a message (or a header block) as "Name: value" lines, bounded."""
    lines = []
    size = 0
    try:
        for name, value in msg.items():
            line = f"{name}: {one_line(str(value)[: MAX_LINE_CHARS * 4])}"[:MAX_LINE_CHARS]
            lines.append(line)
            size += len(line) + 1
            if size > MAX_TEXT_CHARS:
                break
    except Exception:  # noqa: S110 - keep the headers read before the broken one
        pass
    return bounded("\n".join(lines))
