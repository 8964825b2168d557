"""The plain-text part derived from HTML: paragraphs, headings, lists, links as `text (url)`.

A small HTMLParser converter rather than html2text, whose output is Markdown
(`[text](url)`, `**bold**`), not the plain text mail clients show. Comments are dropped
except the merge-tag markers of render.py, which must survive into the text template.
"""

import re
from html.parser import HTMLParser

_BLOCKS = {
    "p", "div", "table", "tr", "section", "article", "header", "footer",
    "blockquote", "ul", "ol", "center", "main", "aside", "nav", "form",
}  # fmt: skip
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_DROP = {"script", "style", "head", "title", "template", "noscript"}


class _Converter(HTMLParser):
    def __init__(self, *, keep_comment: re.Pattern[str] | None, url_marks: tuple[str, str]):
        super().__init__(convert_charrefs=True)
        self.url_marks = url_marks
        self.out: list[str] = []
        self.keep_comment = keep_comment
        self.dropping = 0
        self.links: list[tuple[str, int]] = []  # (href, position in out when opened)
        self.lists: list[list[int]] = []  # one counter per open list (None-like 0 for ul)
        self.pre = 0

    def _break(self, count: int = 1) -> None:
        self.out.append("\n" * count)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP:
            self.dropping += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCKS or tag in _HEADINGS:
            self._break(2)
            if tag == "ul":
                self.lists.append([0, 0])
            elif tag == "ol":
                self.lists.append([1, 0])
        elif tag == "li":
            self._break()
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self.out.append(f"{self.lists[-1][1]}. ")
            else:
                self.out.append("- ")
        elif tag == "td" or tag == "th":
            self.out.append(" ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.out)))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)
        elif tag == "hr":
            self.out.append("\n\n---\n\n")
        elif tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _DROP:
            self.dropping -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP:
            self.dropping = max(self.dropping - 1, 0)
        elif tag in _HEADINGS:
            if tag in ("h1", "h2"):
                start = max((i for i, piece in enumerate(self.out) if "\n\n" in piece), default=-1)
                title = "".join(self.out[start + 1 :]).strip()
                self.out.append("\n" + ("=" if tag == "h1" else "-") * min(len(title), 70))
            self._break(2)
        elif tag in _BLOCKS:
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
            self._break(2)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            href = href.strip()
            if href and not href.lower().startswith(("#", "javascript:")) and href != label:
                opening, closing = self.url_marks
                marked = f"{opening}{href}{closing}"
                self.out.append(f" ({marked})" if label else marked)
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)

    def handle_data(self, data: str) -> None:
        if self.dropping:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))

    def handle_comment(self, data: str) -> None:
        if self.keep_comment is not None and self.keep_comment.fullmatch(data):
            self.out.append(data)


def html_to_text(
    html: str, *, keep_comment: re.Pattern[str] | None = None, url_marks: tuple[str, str] = ("", "")
) -> str:
    """Plain text for the HTML; comments fully matching keep_comment are kept as text.

    url_marks wraps each link URL written out, so a caller can tell URLs from text.
    """
    converter = _Converter(keep_comment=keep_comment, url_marks=url_marks)
    converter.feed(html)
    converter.close()
    text = "".join(converter.out)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
