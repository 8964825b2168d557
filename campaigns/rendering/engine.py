"""A sandboxed merge-tag engine for what marketers write: bodies, subjects and link URLs.

Django's template engine is not used for user content: `{% load %}`, attribute lookups and
call semantics are hard to sandbox. This engine knows only

    {{ name }}  {{ attributes.plan }}  {{ name|filter }}  {{ name|filter:"arg" }}
    {% if name %} … {% else %} … {% endif %}   (also `{% if not name %}`)

Names are dict keys of a context of plain values (see `validate_context`); a dotted name
looks up nested dict keys and nothing else, never attributes, methods or `_private` keys.
Custom contact fields live under `attributes.` (`{{ attributes.plan }}`), so they can never
shadow the built-in names below. There are no loops, includes or loaders, so rendering is
linear in the template plus the values: time is bounded by the size limit.

Escaping depends on where a tag stands (its `Mode`): HTML text and attributes escape
values (there is no `safe` filter: contact data comes from public signup forms); plain
text (subjects, the text part) doesn't; inside a link URL a value after `?` or `#` is
percent-encoded, and a tag that starts the URL must give an http(s) or mailto URL or
renders empty (so a contact field can't become `javascript:`).

`compile_template` fails with `TemplateError` (line and column) on anything else; at
render time an unknown name renders empty (or its default), and `unresolved_tags` lists
such names for the pre-send check.
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings

from campaigns.rendering.context import ContextError, validate_context
from campaigns.rendering.filters import FILTERS, MAX_TRUNCATE, as_text
from compliance.footer import (
    POSTAL_ADDRESS_PLACEHOLDER,
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
)


def _placeholder_name(placeholder: str) -> str:
    return placeholder.removeprefix("{{").removesuffix("}}").strip()


UNSUBSCRIBE_URL = _placeholder_name(UNSUBSCRIBE_PLACEHOLDER)
PREFERENCES_URL = _placeholder_name(PREFERENCES_PLACEHOLDER)
POSTAL_ADDRESS = _placeholder_name(POSTAL_ADDRESS_PLACEHOLDER)
WEB_VERSION_URL = "web_version_url"
WEB_VERSION_PLACEHOLDER = "{{ " + WEB_VERSION_URL + " }}"

# What every send provides; custom fields come as `attributes.<key>`.
STANDARD_NAMES = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        POSTAL_ADDRESS,
        UNSUBSCRIBE_URL,
        PREFERENCES_URL,
        WEB_VERSION_URL,
    }
)

MAX_IF_DEPTH = 10


def max_output_bytes() -> int:
    """The size limit of a template and of one rendered part (setting CAMPAIGN_RENDER_MAX_BYTES)."""
    return settings.CAMPAIGN_RENDER_MAX_BYTES


class TemplateError(ValueError):
    """A template the engine refuses; line and column are 1-based, 0 when not known."""

    def __init__(self, message: str, *, line: int = 0, column: int = 0) -> None:
        self.message, self.line, self.column = message, line, column
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(f"{message}{where}")


class RenderLimitError(TemplateError):
    """A rendered part grew past the output limit."""


class Mode(enum.Enum):
    TEXT = "text"  # raw values: subjects, plain-text parts
    HTML = "html"  # escaped values: HTML text and ordinary attributes
    URL_START = "url_start"  # a tag that begins an href/src: must be an http(s)/mailto URL
    URL_PART = "url_part"  # anywhere else in a URL: percent-encoded
    TEXT_URL_START = "text_url_start"  # URL_START in a plain-text part: checked, not escaped


# ---------------------------------------------------------------- tokenizer

# Tags hold no braces and are short, so a stray opener costs one short scan, not a quadratic one.
_TAG = re.compile(r"\{\{(?P<var>[^{}]{0,500})\}\}|\{%(?P<block>[^{}%]{0,500})%\}")
_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_PATH = re.compile(rf"{_NAME}(?:\.{_NAME})*\Z")
_FILTER = re.compile(
    rf"\s*\|\s*(?P<name>{_NAME})(?:\s*:\s*(?:\"(?P<dq>[^\"\\]*)\"|'(?P<sq>[^'\\]*)'|(?P<num>\d+)))?\s*"
)
_IF = re.compile(r"if\s+(?P<neg>not\s+)?(?P<path>[A-Za-z0-9_.]+)\Z")


@dataclass(frozen=True)
class Token:
    kind: str  # "text", "var" or "block"
    source: str  # the text, or the inside of the tag, stripped
    line: int
    column: int


class _Positions:
    """Line and column of offsets visited in increasing order, in linear time overall."""

    def __init__(self, source: str) -> None:
        self.source, self.offset, self.line, self.line_start = source, 0, 1, 0

    def __call__(self, offset: int) -> tuple[int, int]:
        if offset < self.offset:
            self.offset, self.line, self.line_start = 0, 1, 0
        newlines = self.source.count("\n", self.offset, offset)
        if newlines:
            self.line += newlines
            self.line_start = self.source.rfind("\n", self.offset, offset) + 1
        self.offset = offset
        return self.line, offset - self.line_start + 1


def tokenize(source: str) -> list[Token]:
    """Split a template into text and tags; TemplateError for a tag left open."""
    if len(source) > max_output_bytes() or len(source.encode("utf-8")) > max_output_bytes():
        raise TemplateError(f"The template is larger than {max_output_bytes()} bytes.")
    tokens, position, where = [], 0, _Positions(source)
    for match in _TAG.finditer(source):
        _check_text(source, position, match.start())
        if match.start() > position:
            line, column = where(position)
            tokens.append(Token("text", source[position : match.start()], line, column))
        line, column = where(match.start())
        inner = match.group("var") if match.group("var") is not None else match.group("block")
        kind = "var" if match.group("var") is not None else "block"
        tokens.append(Token(kind, inner.strip(), line, column))
        position = match.end()
    _check_text(source, position, len(source))
    if position < len(source):
        line, column = where(position)
        tokens.append(Token("text", source[position:], line, column))
    return tokens


def _check_text(source: str, start: int, end: int) -> None:
    # A stray `}}` or `%}` is ordinary CSS (`@media{p{…}}`, `width:100%}`); an opener is not.
    for opener in ("{{", "{%"):
        found = source.find(opener, start, end)
        if found != -1:
            line, column = _Positions(source)(found)
            raise TemplateError(f"“{opener}” is never closed.", line=line, column=column)


_NO_SAFE = "There is no “safe” filter: values are always escaped in HTML."


# ---------------------------------------------------------------- nodes


def _lookup(context: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = context
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


_SAFE_URL = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)


@dataclass(frozen=True)
class Variable:
    path: tuple[str, ...]
    filters: tuple[tuple[Any, Any], ...]
    mode: Mode
    has_default: bool
    source: str
    escaped: bool = False  # an `escape` filter already escaped the value

    def render(self, context: Mapping[str, Any]) -> str:
        value = _lookup(context, self.path)
        for function, arg in self.filters:
            value = function(value, arg)
        text = as_text(value)
        mode = self.mode
        if mode is Mode.TEXT or (self.escaped and mode is Mode.HTML):
            return text
        if mode is Mode.HTML:
            return html.escape(text)
        if mode is Mode.URL_PART:
            return quote(text, safe="")
        text = text.strip()
        if not _SAFE_URL.match(text):
            return ""
        return text if mode is Mode.TEXT_URL_START else html.escape(text)


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    negate: bool
    then: tuple[Any, ...]
    otherwise: tuple[Any, ...]

    def render_into(self, context: Mapping[str, Any], out: list[str], budget: list[int]) -> None:
        value = _lookup(context, self.path)
        truthy = bool(value) if not isinstance(value, str) else bool(value.strip())
        branch = self.otherwise if truthy == self.negate else self.then
        _render_nodes(branch, context, out, budget)


def _render_nodes(
    nodes: tuple[Any, ...], context: Mapping[str, Any], out: list[str], budget: list[int]
) -> None:
    # Literals are bounded by the template's size; values are counted as they come, so a
    # large value repeated by many tags fails early instead of filling memory.
    for node in nodes:
        if node.__class__ is str:
            out.append(node)
        elif node.__class__ is Variable:
            text = node.render(context)
            budget[0] -= len(text)
            if budget[0] < 0:
                raise RenderLimitError("The rendered message is larger than the limit.")
            out.append(text)
        else:
            node.render_into(context, out, budget)


def parse_variable(token: Token, mode: Mode) -> Variable:
    """A `{{ … }}` tag as a Variable node; TemplateError for anything but a path and filters."""
    head, _, rest = token.source.partition("|")
    path = head.strip()
    where = {"line": token.line, "column": token.column}
    if not path:
        raise TemplateError("An empty merge tag.", **where)
    if not _PATH.match(path):
        raise TemplateError(
            f"“{token.source[:60]}” is not a merge tag: use a field name such as "
            "first_name or attributes.plan, optionally with filters.",
            **where,
        )
    filters, has_default, escaped = [], False, False
    rest = token.source[len(head) :]
    position = 0
    while position < len(rest):
        match = _FILTER.match(rest, position)
        if not match:
            raise TemplateError(f"Cannot read the filters in “{token.source[:60]}”.", **where)
        name = match.group("name")
        if name == "safe":
            raise TemplateError(_NO_SAFE, **where)
        if name not in FILTERS:
            raise TemplateError(
                f"Unknown filter “{name}”; use one of: {', '.join(sorted(FILTERS))}.", **where
            )
        function, kind = FILTERS[name]
        text = match.group("dq") if match.group("dq") is not None else match.group("sq")
        number = match.group("num")
        if kind is None and (text is not None or number is not None):
            raise TemplateError(f"The filter “{name}” takes no argument.", **where)
        if kind == "str":
            if text is None and number is None:
                raise TemplateError(f"The filter “{name}” needs a quoted argument.", **where)
            arg: Any = text if text is not None else number
        elif kind == "int":
            if number is None or int(number) > MAX_TRUNCATE:
                raise TemplateError(f"The filter “{name}” needs a number.", **where)
            arg = int(number)
        else:
            arg = None
        has_default = has_default or name == "default"
        escaped = escaped or name == "escape"
        filters.append((function, arg))
        position = match.end()
    return Variable(
        path=tuple(path.split(".")),
        filters=tuple(filters),
        mode=mode,
        has_default=has_default,
        source=token.source,
        escaped=escaped,
    )


def parse(tokens: Iterable[tuple[Token, Mode]]) -> tuple[Any, ...]:
    """Tokens (each with its Mode) as a tree of literals, Variables and Conditions."""
    # Each open frame: [condition token, path, negate, then-nodes, else-nodes or None]
    root: list[Any] = []
    stack: list[list[Any]] = []

    def current() -> list[Any]:
        if not stack:
            return root
        frame = stack[-1]
        return frame[4] if frame[4] is not None else frame[3]

    for token, mode in tokens:
        where = {"line": token.line, "column": token.column}
        if token.kind == "text":
            nodes = current()
            if nodes and nodes[-1].__class__ is str:
                nodes[-1] += token.source
            else:
                nodes.append(token.source)
        elif token.kind == "var":
            current().append(parse_variable(token, mode))
        else:
            words = token.source.split()
            keyword = words[0] if words else ""
            if keyword == "if":
                match = _IF.match(" ".join(words))
                if not match or not _PATH.match(match.group("path")):
                    raise TemplateError(
                        "Write a condition as {% if name %} or {% if not name %}.", **where
                    )
                if len(stack) >= MAX_IF_DEPTH:
                    raise TemplateError("Conditions are nested too deeply.", **where)
                path = tuple(match.group("path").split("."))
                stack.append([token, path, bool(match.group("neg")), [], None])
            elif keyword == "else" and len(words) == 1:
                if not stack or stack[-1][4] is not None:
                    raise TemplateError("{% else %} without an {% if %}.", **where)
                stack[-1][4] = []
            elif keyword == "endif" and len(words) == 1:
                if not stack:
                    raise TemplateError("{% endif %} without an {% if %}.", **where)
                _, path, negate, then, otherwise = stack.pop()
                current().append(Condition(path, negate, tuple(then), tuple(otherwise or ())))
            else:
                shown = keyword or token.source
                raise TemplateError(
                    f"Unknown tag “{shown[:40]}”: only {{% if %}}, {{% else %}} and "
                    "{% endif %} are available.",
                    **where,
                )
    if stack:
        token = stack[-1][0]
        raise TemplateError("{% if %} without {% endif %}.", line=token.line, column=token.column)
    return tuple(root)


@dataclass(frozen=True)
class CompiledTemplate:
    """A template parsed once, rendered per recipient."""

    nodes: tuple[Any, ...]
    variables: tuple[Variable, ...] = field(default=())
    conditions: tuple[tuple[str, ...], ...] = field(default=())

    def render(self, context: Mapping[str, Any], *, validated: bool = False) -> str:
        """Render for one recipient; the context is validated unless the caller did."""
        if not validated:
            context = validate_context(context)
        limit = max_output_bytes()
        out: list[str] = []
        _render_nodes(self.nodes, context, out, [limit])
        result = "".join(out)
        if len(result) * 4 > limit and len(result.encode("utf-8")) > limit:
            raise RenderLimitError(f"The rendered message is larger than {limit} bytes.")
        return result


def _walk(nodes: tuple[Any, ...], variables: list[Variable], conditions: list) -> None:
    for node in nodes:
        if isinstance(node, Variable):
            variables.append(node)
        elif isinstance(node, Condition):
            conditions.append(node.path)
            _walk(node.then, variables, conditions)
            _walk(node.otherwise, variables, conditions)


def build(nodes: tuple[Any, ...]) -> CompiledTemplate:
    variables: list[Variable] = []
    conditions: list[tuple[str, ...]] = []
    _walk(nodes, variables, conditions)
    return CompiledTemplate(nodes, tuple(variables), tuple(conditions))


def compile_template(source: str, *, mode: Mode = Mode.TEXT) -> CompiledTemplate:
    """Parse a template once; TemplateError (with line and column) when it is not valid."""
    return build(parse((token, mode) for token in tokenize(source)))


def _resolved(path: tuple[str, ...], available: set[str]) -> bool:
    return any(".".join(path[:end]) in available for end in range(1, len(path) + 1))


def unresolved_tags(template: str | CompiledTemplate, available_names: Iterable[str]) -> list[str]:
    """Names the template uses that the audience doesn't have, for the pre-send check.

    A name is resolved when it or one of its dotted prefixes is available; a tag with a
    `default` filter never counts, and neither does an `{% if %}` condition (a missing
    name is simply false).
    """
    compiled = compile_template(template) if isinstance(template, str) else template
    available = set(available_names)
    missing = {
        ".".join(variable.path)
        for variable in compiled.variables
        if not variable.has_default and not _resolved(variable.path, available)
    }
    return sorted(missing)


__all__ = [
    "CompiledTemplate",
    "ContextError",
    "Mode",
    "RenderLimitError",
    "TemplateError",
    "compile_template",
    "unresolved_tags",
    "validate_context",
]
