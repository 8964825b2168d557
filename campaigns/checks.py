"""The pre-send checklist: what must hold before a campaign may be scheduled or sent.

The Review tab shows it and `campaign_schedule` enforces it, from the same function, so
that what a marketer sees is what stops the send. Fails block; warnings only inform.

Links are checked for form only. Reachability (fetching each URL) is not done: requests
to marketer-written URLs from the server need SSRF guards (private and metadata
addresses, DNS rebinding) before they can be offered behind CAMPAIGN_LINK_CHECKS.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from accounts.models import Workspace
from campaigns.audience import AudienceCount, audience_contacts, audience_count
from campaigns.models import Campaign
from campaigns.personalise import address_is_valid, campaign_compile, compose, recipient_context
from campaigns.preview import preview_context
from campaigns.rendering import (
    CompiledMessage,
    ContextError,
    RenderedMessage,
    TemplateError,
    compile_template,
    unresolved_tags,
)
from campaigns.rendering.engine import STANDARD_NAMES, Mode
from campaigns.senders import sender_domain_for
from compliance.footer import NO_POSTAL_ADDRESS, footer_problems
from contacts import selectors as contact_selectors

PASS, FAIL, WARN = "pass", "fail", "warn"
# Gmail cuts a message's HTML after about 102 KB and hides the rest behind a link.
GMAIL_CLIP_BYTES = 102 * 1024
LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
SHOWN_PROBLEMS = 5
# Spaces, control characters and line separators: never in a link or an address.
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")

# Where a failing check is fixed: the review page links each fail there.
FIX_CONTENT, FIX_AUDIENCE, FIX_SETTINGS, FIX_SENDING = "content", "audience", "settings", "sending"


@dataclass(frozen=True)
class Check:
    key: str
    label: str
    level: str  # PASS, FAIL or WARN
    message: str
    fix: str = ""  # one of the FIX_ names, or "" when there is nothing to link to

    @property
    def is_blocking(self) -> bool:
        return self.level == FAIL


@dataclass(frozen=True)
class Checklist:
    checks: list[Check]
    audience: AudienceCount | None = None
    rendered: RenderedMessage | None = field(default=None, repr=False)

    @property
    def blocking(self) -> list[Check]:
        return [check for check in self.checks if check.level == FAIL]

    @property
    def warnings(self) -> list[Check]:
        return [check for check in self.checks if check.level == WARN]

    @property
    def may_send(self) -> bool:
        return not self.blocking

    def get(self, key: str) -> Check | None:
        return next((check for check in self.checks if check.key == key), None)


# ---------------------------------------------------------------- the checks


def _from_domain(campaign: Campaign) -> Check:
    label = "From address"
    address = campaign.from_email.strip()
    if not address:
        return Check("from_domain", label, FAIL, "Add a From address.", FIX_CONTENT)
    if not address_is_valid(address) or _CONTROL.search(address):
        return Check(
            "from_domain", label, FAIL, f"“{address}” is not a valid email address.", FIX_CONTENT
        )
    domain = sender_domain_for(workspace=campaign.workspace, address=address)
    if domain is None:
        at = address.rpartition("@")[2]
        return Check(
            "from_domain",
            label,
            FAIL,
            f"{address} is not on a verified sending domain of this workspace: verify {at} "
            "under Sending, or use an address at a domain that is verified.",
            FIX_SENDING,
        )
    return Check(
        "from_domain", label, PASS, f"{address} aligns with the verified domain {domain.domain}."
    )


def _reply_to(campaign: Campaign) -> Check:
    address = campaign.reply_to.strip()
    if not address:
        return Check("reply_to", "Reply-To", PASS, "Replies go to the From address.")
    if not address_is_valid(address) or _CONTROL.search(address):
        message = f"“{address[:100]}” is not a valid email address."
        return Check("reply_to", "Reply-To", FAIL, message, FIX_CONTENT)
    return Check("reply_to", "Reply-To", PASS, f"Replies go to {address}.")


def _footer(campaign: Campaign, composed: str) -> Check:
    problems = footer_problems(workspace=campaign.workspace, html=composed)
    if not problems:
        return Check(
            "footer", "Footer", PASS, "The footer has an unsubscribe link and your address."
        )
    # The opt-out link is fixed in the content; a missing postal address in the settings.
    fix = FIX_SETTINGS if problems == [NO_POSTAL_ADDRESS] else FIX_CONTENT
    return Check("footer", "Footer", FAIL, " ".join(problems), fix)


def _subject(campaign: Campaign) -> Check:
    if not campaign.subject.strip():
        return Check("subject", "Subject", FAIL, "Add a subject.", FIX_CONTENT)
    return Check("subject", "Subject", PASS, "The subject is set.")


def _workspace_active(workspace: Workspace) -> Check:
    label = "Workspace"
    if workspace.is_active:
        return Check("workspace_active", label, PASS, "The workspace may send.")
    if workspace.status == Workspace.Status.SUSPENDED:
        reason = f" Reason: {workspace.status_reason}" if workspace.status_reason else ""
        message = f"The workspace is suspended and cannot send.{reason}"
    else:
        message = "The workspace is waiting for review by the platform; it can send once approved."
    return Check("workspace_active", label, FAIL, message)


def _audience(count: AudienceCount) -> Check:
    label = "Audience"
    if count.sendable > 0:
        message = f"{count.sendable} recipient{'' if count.sendable == 1 else 's'}"
        if count.suppressed:
            message += f" ({count.suppressed} of {count.matching} are suppressed and skipped)"
        return Check("audience", label, PASS, message + ".")
    if count.matching == 0:
        message = "No one to send to: choose lists or segments that hold active contacts."
    else:
        message = f"No one to send to: all {count.matching} matching contacts are suppressed."
    return Check("audience", label, FAIL, message, FIX_AUDIENCE)


def available_names(*, workspace: Workspace) -> set[str]:
    """The merge-tag names every recipient has: the standard ones and the custom fields."""
    keys = contact_selectors.field_list(workspace=workspace).values_list("key", flat=True)
    return set(STANDARD_NAMES) | {f"attributes.{key}" for key in keys}


def _merge_tags(campaign: Campaign, compiled: CompiledMessage) -> Check:
    label = "Merge tags"
    names = available_names(workspace=campaign.workspace)
    missing = sorted(
        {
            name
            for part in (compiled.subject, compiled.html, compiled.text)
            for name in unresolved_tags(part, names)
        }
    )
    if not missing:
        return Check("merge_tags", label, PASS, "Every merge tag has a value for this audience.")
    tags = ", ".join("{{ " + name + " }}" for name in missing)
    return Check(
        "merge_tags",
        label,
        FAIL,
        f"No value for {tags}: create the field, fix the name, or give the tag a default "
        "(e.g. {{ " + missing[0] + '|default:"…" }}).',
        FIX_CONTENT,
    )


class _LinkCollector(HTMLParser):
    """Every href and src of a document, and how many images lack alt text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images_without_alt = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("href", "src"):
            if name in values:
                self.links.append(values[name] or "")
        if tag == "img" and not (values.get("alt") or "").strip():
            self.images_without_alt += 1

    handle_startendtag = handle_starttag


_HOST_LABEL = re.compile(r"[\w-]+")


def link_problem(url: str) -> str | None:
    """Why a link does not work in an email, or None when it is well-formed."""
    value = url.strip()
    if not value:
        return "is empty"
    if _CONTROL.search(value):
        return "contains a space or a control character"
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number
    except ValueError:
        return "is not a valid address"
    scheme = parts.scheme.lower()
    if not scheme:
        return "is not a full address (start it with https://)"
    if scheme not in LINK_SCHEMES:
        return f"uses “{scheme}:”; only http, https, mailto and tel links work in email"
    if scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host:
            return "has no host name"
        if ":" not in host and not all(
            _HOST_LABEL.fullmatch(label) for label in host.removesuffix(".").split(".")
        ):
            return "has an invalid host name"
        if port == 0:
            return "has an invalid port"
    elif not parts.path:
        return f"has nothing after “{scheme}:”"
    return None


def _shorten(url: str, limit: int = 80) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


def _links(links: list[str]) -> Check:
    label = "Links"
    problems: dict[str, str] = {}
    for url in links:
        problem = link_problem(url)
        if problem and url not in problems:
            problems[url] = problem
    if not problems:
        return Check("links", label, PASS, f"{len(links)} links and images, all well-formed.")
    shown = [f"“{_shorten(url)}” {why}" for url, why in list(problems.items())[:SHOWN_PROBLEMS]]
    more = len(problems) - len(shown)
    message = "; ".join(shown) + (f"; and {more} more" if more else "") + "."
    return Check("links", label, FAIL, f"Broken links: {message}", FIX_CONTENT)


def _text_part(rendered: RenderedMessage) -> Check:
    if not rendered.text.strip():
        return Check(
            "text_part",
            "Plain-text part",
            FAIL,
            "The plain-text part is empty: write one, or put text in the HTML body.",
            FIX_CONTENT,
        )
    return Check("text_part", "Plain-text part", PASS, "The plain-text part is present.")


def _size(rendered: RenderedMessage) -> Check:
    size = len(rendered.html.encode("utf-8"))
    kilobytes = math.ceil(size / 1024)
    if size > GMAIL_CLIP_BYTES:
        return Check(
            "html_size",
            "Message size",
            WARN,
            f"The HTML is {kilobytes} KB: Gmail clips messages over about 102 KB and hides "
            "the rest, footer included, behind “View entire message”.",
            FIX_CONTENT,
        )
    return Check("html_size", "Message size", PASS, f"The HTML is {kilobytes} KB.")


def _alt_text(count: int) -> Check:
    if count:
        images = "1 image has" if count == 1 else f"{count} images have"
        return Check(
            "image_alt",
            "Image descriptions",
            WARN,
            f"{images} no alt text: readers who block images or use a screen reader see nothing.",
            FIX_CONTENT,
        )
    return Check("image_alt", "Image descriptions", PASS, "Every image has alt text.")


def _preheader(campaign: Campaign) -> Check:
    if not campaign.preheader.strip():
        return Check(
            "preheader",
            "Preheader",
            WARN,
            "No preheader: inboxes show the first words of the body next to the subject instead.",
            FIX_CONTENT,
        )
    return Check("preheader", "Preheader", PASS, "The preheader is set.")


# ---------------------------------------------------------------- the checklist


def _sample_context(campaign: Campaign) -> dict[str, Any]:
    """What a real recipient would get: the first audience contact, else sample values."""
    contact = audience_contacts(campaign=campaign).order_by("pk").first()
    if contact is None:
        return preview_context(workspace=campaign.workspace, contact=None)
    return recipient_context(campaign=campaign, contact=contact)


def _part_errors(campaign: Campaign, *, subject: str, html: str, prefix: str = "") -> str:
    """The first part that does not compile alone, so that a position is the marketer's own."""
    parts = (
        ("Subject", subject, Mode.TEXT),
        ("Preheader", campaign.preheader, Mode.TEXT),
        ("HTML body", html, Mode.HTML),
        ("Plain-text body", campaign.text, Mode.TEXT),
    )
    for part, source, mode in parts:
        try:
            compile_template(source, mode=mode)
        except TemplateError as error:
            return f"{prefix}{part}: {error}"
    return ""


def _compile_all(campaign: Campaign) -> tuple[CompiledMessage | None, str]:
    """The campaign's message compiled (A/B variants too), or None and the first error."""
    try:
        compiled = campaign_compile(campaign)
    except TemplateError as error:
        located = _part_errors(campaign, subject=campaign.subject, html=campaign.html)
        return None, located or str(error)
    for variant in campaign.variants.all():
        html = variant.html or campaign.html
        try:
            campaign_compile(campaign, subject=variant.subject, html=html)
        except TemplateError as error:
            prefix = f"Variant {variant.label}, "
            located = _part_errors(campaign, subject=variant.subject, html=html, prefix=prefix)
            return compiled, located or f"Variant {variant.label}: {error}"
    return compiled, ""


def presend_checks(*, campaign: Campaign) -> Checklist:
    """Every pre-send check of the campaign, in the order the Review tab shows them."""
    layout = campaign.template.html if campaign.template_id else None
    count = audience_count(campaign=campaign)
    checks = [
        _from_domain(campaign),
        _reply_to(campaign),
        _subject(campaign),
        _footer(campaign, compose(layout=layout, body=campaign.html)),
    ]
    compiled, error = _compile_all(campaign)
    rendered = None
    if compiled is not None:
        try:
            rendered = compiled.render(_sample_context(campaign))
        except (TemplateError, ContextError) as render_error:
            error = error or str(render_error)
    if error:
        message = f"The message does not compile: {error}"
        checks.append(Check("template", "Template", FAIL, message, FIX_CONTENT))
    else:
        checks.append(Check("template", "Template", PASS, "The message compiles."))
    # The checks below read the rendered message: a message that does not render has
    # only the template check to show, which already blocks.
    collector = _LinkCollector()
    if compiled is not None and rendered is not None:
        collector.feed(rendered.html)
        collector.close()
        checks += [_merge_tags(campaign, compiled), _links(collector.links), _text_part(rendered)]
    checks += [_audience(count), _workspace_active(campaign.workspace)]
    if rendered is not None:
        checks += [_size(rendered), _alt_text(collector.images_without_alt)]
    checks.append(_preheader(campaign))
    return Checklist(checks=checks, audience=count, rendered=rendered)
