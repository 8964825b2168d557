"""Built-in starter layouts: HTML files in this folder, each with a `{{ content }}` slot."""

from dataclasses import dataclass
from pathlib import Path

_FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Starter:
    key: str
    name: str
    description: str
    body: str  # the sample body a new campaign starts with

    @property
    def html(self) -> str:
        return (_FOLDER / f"{self.key}.html").read_text(encoding="utf-8")


STARTERS = (
    Starter(
        key="newsletter",
        name="Newsletter",
        description="A card on a soft background for regular updates.",
        body=(
            '<h1>Hello {{ first_name|default:"there" }},</h1>\n'
            "<p>Here is what is new this month.</p>\n"
            '<p><a href="https://example.com/news">Read more</a></p>'
        ),
    ),
    Starter(
        key="announcement",
        name="Announcement",
        description="A centred headline and one call to action.",
        body=(
            '<h1>Big news, {{ first_name|default:"friend" }}</h1>\n'
            "<p>Tell your readers what changed and why it matters.</p>\n"
            '<p><a class="button" href="https://example.com/">Find out more</a></p>'
        ),
    ),
    Starter(
        key="plain",
        name="Plain",
        description="Looks like a personal email: text first, no decoration.",
        body='<p>Hi {{ first_name|default:"there" }},</p>\n<p>Write your message here.</p>',
    ),
)


def starter_get(key: str) -> Starter | None:
    return next((starter for starter in STARTERS if starter.key == key), None)
