"""One renderer for preview, test send and the real send.

    compiled = compile_message(subject=…, preheader=…, html=…, text=None)   # once per campaign
    rendered = compiled.render(context)                                     # per recipient

Compiling validates every part (TemplateError with line and column), inlines the CSS once
and derives the text part from the HTML when none is given. To inline and convert HTML
that holds merge tags, each tag is first replaced by a marker the HTML parser leaves alone
(private-use characters; `{% … %}` tags inside an HTML comment, which keeps its place even
inside a table), then the markers are turned back into nodes with the escaping their place
asks for: HTML text, a link URL, or plain text.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from campaigns.rendering.engine import (
    CompiledTemplate,
    Mode,
    TemplateError,
    Token,
    build,
    compile_template,
    parse,
    tokenize,
    validate_context,
)
from campaigns.rendering.inline import inline_css
from campaigns.rendering.text import html_to_text

_OPEN, _CLOSE = "\ue000", "\ue001"  # merge-tag marker: \ue000<index>\ue001
_URL_OPEN, _URL_CLOSE = "\ue002", "\ue003"  # link URLs written into the text part
_PRIVATE = re.compile("[\ue000-\ue003]")
_MARKER = re.compile(f"<!--{_OPEN}(\\d+){_CLOSE}-->|{_OPEN}(\\d+){_CLOSE}")
_BLOCK_MARKER = re.compile(f"<!--{_OPEN}\\d+{_CLOSE}-->")
_MARKER_COMMENT = re.compile(f"{_OPEN}\\d+{_CLOSE}")
_URL_ATTRIBUTE = re.compile(r"""\s(?:href|src|background|action)\s*=\s*"([^"]*)\"""", re.I)
_TEXT_URL = re.compile(f"{_URL_OPEN}(.*?){_URL_CLOSE}", re.DOTALL)
_BODY = re.compile(r"<body\b[^>]*>", re.I)
# CR, LF and every other control or line-separator character: never in a header.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_EMPTY_LINK = re.compile(r" \(\)")
_PREHEADER_STYLE = (
    "display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;"
    "opacity:0;overflow:hidden;mso-hide:all"
)


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class CompiledMessage:
    subject: CompiledTemplate
    html: CompiledTemplate
    text: CompiledTemplate
    is_text_derived: bool = False

    def render(self, context: Mapping[str, Any]) -> RenderedMessage:
        """The message for one recipient; ContextError for a context of non-plain values."""
        plain = validate_context(context)
        subject = self.subject.render(plain, validated=True)
        # A merge value with a line break must not start a new header.
        subject = " ".join(_HEADER_BREAKS.sub(" ", subject).split())
        return RenderedMessage(
            subject=subject,
            html=self.html.render(plain, validated=True),
            text=self._text(plain),
        )

    def _text(self, plain: dict[str, Any]) -> str:
        text = self.text.render(plain, validated=True)
        if not self.is_text_derived:
            return text
        # Conditions and empty values leave blank lines and empty links behind.
        return _BLANK_LINES.sub("\n\n", _EMPTY_LINK.sub("", text))


def compile_message(
    *, subject: str, preheader: str = "", html: str, text: str | None = None
) -> CompiledMessage:
    """Validate and prepare a campaign's parts once; TemplateError names what is wrong."""
    if _HEADER_BREAKS.search(subject):
        raise TemplateError("The subject must be one line.")
    compiled_subject = compile_template(subject, mode=Mode.TEXT)
    html_tokens = tokenize(html)
    preheader_tokens = tokenize(" ".join(preheader.split()))
    tokens = html_tokens + preheader_tokens
    marked = _marked_html(html_tokens, 0)
    inlined = inline_css(marked)

    if text is None:
        converted = html_to_text(
            inlined, keep_comment=_MARKER_COMMENT, url_marks=(_URL_OPEN, _URL_CLOSE)
        )
        compiled_text = _compile_marked(converted, tokens, text_part=True)
    else:
        compiled_text = compile_template(text, mode=Mode.TEXT)

    if preheader_tokens:
        hidden = (
            f'<div style="{_PREHEADER_STYLE}" aria-hidden="true">'
            f"{_marked_html(preheader_tokens, len(html_tokens), escape=True)}</div>"
        )
        body = _BODY.search(inlined)
        at = body.end() if body else 0
        inlined = inlined[:at] + hidden + inlined[at:]
    compiled_html = _compile_marked(inlined, tokens, text_part=False)
    return CompiledMessage(
        subject=compiled_subject,
        html=compiled_html,
        text=compiled_text,
        is_text_derived=text is None,
    )


def _marked_html(tokens: list[Token], first: int, *, escape: bool = False) -> str:
    pieces = []
    for index, token in enumerate(tokens, start=first):
        if token.kind == "text":
            literal = _PRIVATE.sub("\ufffd", token.source)
            pieces.append(html_lib.escape(literal) if escape else literal)
        elif token.kind == "var":
            pieces.append(f"{_OPEN}{index}{_CLOSE}")
        else:
            pieces.append(f"<!--{_OPEN}{index}{_CLOSE}-->")
    return "".join(pieces)


def _url_positions(document: str, text_part: bool) -> dict[int, Mode]:
    """The Mode of each marker (by its offset in document) that stands inside a URL."""
    modes: dict[int, Mode] = {}
    spans = _TEXT_URL if text_part else _URL_ATTRIBUTE
    start_mode = Mode.TEXT_URL_START if text_part else Mode.URL_START
    for span in spans.finditer(document):
        value, offset = span.group(1), span.start(1)
        for marker in _MARKER.finditer(value):
            # Only whitespace and {% … %} tags before it: the tag gives the whole URL.
            before = _BLOCK_MARKER.sub("", value[: marker.start()])
            at_start = not marker.group(1) and not before.strip()
            modes[offset + marker.start()] = start_mode if at_start else Mode.URL_PART
    return modes


def _compile_marked(document: str, tokens: list[Token], *, text_part: bool) -> CompiledTemplate:
    modes = _url_positions(document, text_part)
    default = Mode.TEXT if text_part else Mode.HTML
    sequence: list[tuple[Token, Mode]] = []

    def literal(text: str) -> None:
        if text_part:
            text = text.replace(_URL_OPEN, "").replace(_URL_CLOSE, "")
        if text:
            sequence.append((Token("text", text, 0, 0), default))

    position = 0
    for marker in _MARKER.finditer(document):
        literal(document[position : marker.start()])
        token = tokens[int(marker.group(1) or marker.group(2))]
        sequence.append((token, modes.get(marker.start(), default)))
        position = marker.end()
    literal(document[position:])
    return build(parse(sequence))
