"""Personalised renders per second of a 20 KB newsletter: 10 merge tags and 20 links.

Compiles the newsletter once (validation, CSS inlining, text part), then renders it for
--recipients distinct contacts (subject, HTML and text; each of the 20 links carries the
recipient's id in its query string, URL-encoded per recipient). The baseline is a bare
`str.format` of the same HTML and text with the same values, no escaping, no
validation, in the same run. Prints one JSON line.

    DEBUG=1 .venv/bin/python bench/render.py [--recipients 20000] [--runs 5]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")

import django

django.setup()

from campaigns.rendering import compile_message  # noqa: E402
from campaigns.rendering.text import html_to_text  # noqa: E402

STYLE = """<style>
  body { margin: 0; background: #f4f4f4; font-family: Helvetica, Arial, sans-serif; }
  .wrap { max-width: 600px; margin: 0 auto; background: #ffffff; }
  .lead { font-size: 18px; color: #222222; line-height: 1.5; }
  p { font-size: 15px; color: #444444; line-height: 1.6; }
  a { color: #0055ff; }
  @media (max-width: 600px) { .wrap { width: 100% !important; } }
  @media (prefers-color-scheme: dark) { body { background: #111111; } }
</style>"""

FILLER = (
    "Our spring collection brings lighter fabrics, brighter colours and a few classics "
    "that came back by popular demand. Free returns for 60 days, as always. "
)


def newsletter(tag: "callable") -> str:
    """The newsletter, with tag(name, filters) writing each merge tag."""
    tags = [
        tag("first_name", '|default:"there"'),
        tag("last_name", ""),
        tag("email", ""),
        tag("attributes.plan", '|default:"free"|upper'),
        tag("attributes.city", '|default:"your city"'),
        tag("attributes.points", ""),
        tag("attributes.tier", "|title"),
        tag("postal_address", ""),
        tag("unsubscribe_url", ""),
        tag("preferences_url", ""),
    ]
    link_tag = tag("attributes.uid", "")
    body = [f"<h1>Hello {tags[0]} {tags[1]}</h1>"]
    body.append(f'<p class="lead">Plan {tags[3]} for {tags[2]}, near {tags[4]}.</p>')
    for index in range(20):
        body.append(
            f'<p>{FILLER * 6}<a href="https://shop.example/item/{index}'
            f'?utm_source=news&amp;uid={link_tag}">Item {index}</a></p>'
        )
    body.append(f"<p>You have {tags[5]} points, {tags[6]} member.</p>")
    body.append(f"<p>{tags[7]}<br>{tags[8]} · {tags[9]}</p>")
    return (
        f"<!doctype html><html><head>{STYLE}</head><body>"
        f'<div class="wrap">{"".join(body)}</div></body></html>'
    )


def contexts(count: int) -> list[dict]:
    return [
        {
            "email": f"user{n}@example.com",
            "first_name": f"Name{n}",
            "last_name": "Lee",
            "postal_address": "1 Main St, Springfield",
            "unsubscribe_url": f"https://esp.example/u/{n:08d}",
            "preferences_url": f"https://esp.example/p/{n:08d}",
            "web_version_url": "https://esp.example/v/abc",
            "attributes": {
                "plan": "pro",
                "city": "Lyon",
                "points": n % 1000,
                "tier": "gold",
                "uid": f"u-{n}",
            },
        }
        for n in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    source = newsletter(lambda name, filters: "{{ " + name + filters + " }}")
    started = time.perf_counter()
    compiled = compile_message(
        subject="{{ first_name|default:'Hi' }}, the spring news", preheader="New in", html=source
    )
    compile_s = time.perf_counter() - started

    # Baseline: the same document as a format string, values substituted raw.
    fields = {}

    def format_tag(name: str, filters: str) -> str:
        key = name.replace(".", "_")
        fields[key] = name
        return "{" + key + "}"

    def format_string(document: str) -> str:
        document = document.replace("{", "{{").replace("}", "}}")
        for key in fields:
            document = document.replace("{{" + key + "}}", "{" + key + "}")
        return document

    baseline_source = newsletter(format_tag)
    baseline_html = format_string(baseline_source)
    baseline_text = format_string(html_to_text(baseline_source))
    baseline_subject = "{first_name}, the spring news"
    people = contexts(args.recipients)

    def flat(context: dict) -> dict:
        values = {**context, **context["attributes"]}
        return {key: values[name.rsplit(".", 1)[-1]] for key, name in fields.items()}

    flat_people = [flat(person) for person in people]

    ours, baseline = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        for person in people:
            compiled.render(person)
        ours.append(len(people) / (time.perf_counter() - started))
        started = time.perf_counter()
        for values in flat_people:
            baseline_subject.format(**values)
            baseline_html.format(**values)
            baseline_text.format(**values)
        baseline.append(len(people) / (time.perf_counter() - started))

    sample = compiled.render(people[0])
    renders, base = statistics.median(ours), statistics.median(baseline)
    print(
        json.dumps(
            {
                "renders_per_s": round(renders),
                "baseline_renders_per_s": round(base),
                "ratio": round(renders / base, 3),  # ours over the baseline, as in every bench
                "html_bytes": len(source.encode()),
                "merge_tags": 10,
                "links": sample.html.count("<a "),
                "personalised_links": sample.html.count("uid=u-0"),
                "rendered_html_bytes": len(sample.html.encode()),
                "compile_ms": round(compile_s * 1000, 1),
                "recipients": args.recipients,
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
