"""The editor's preview: a campaign's parts rendered for one contact, or for sample values.

Uses the same renderer as the real send. Preview links are placeholders: a working
unsubscribe link must not be one click away in the editor.
"""

from dataclasses import dataclass, field
from typing import Any

from accounts.models import Workspace
from campaigns.personalise import compose, contact_values
from campaigns.rendering import (
    ContextError,
    RenderedMessage,
    TemplateError,
    compile_message,
    compile_template,
)
from campaigns.rendering.engine import Mode
from contacts.models import Contact

PREVIEW_LINK = "https://example.com/preview-link"
SAMPLE_CONTACT = {
    "email": "alex@example.com",
    "first_name": "Alex",
    "last_name": "Example",
    "attributes": {},
}


@dataclass(frozen=True)
class PreviewError:
    part: str
    message: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Preview:
    rendered: RenderedMessage | None
    errors: list[PreviewError] = field(default_factory=list)


def preview_context(*, workspace: Workspace, contact: Contact | None) -> dict[str, Any]:
    values = SAMPLE_CONTACT if contact is None else contact_values(contact)
    return {
        **values,
        "postal_address": workspace.postal_address,
        "unsubscribe_url": PREVIEW_LINK,
        "preferences_url": PREVIEW_LINK,
        "web_version_url": PREVIEW_LINK,
    }


def _error(part: str, error: TemplateError) -> PreviewError:
    return PreviewError(part=part, message=error.message, line=error.line, column=error.column)


def campaign_preview(
    *,
    workspace: Workspace,
    subject: str,
    preheader: str,
    html: str,
    text: str,
    layout: str | None,
    contact: Contact | None,
) -> Preview:
    """Render the parts for the contact; TemplateErrors come back with their part and place."""
    errors = []
    parts = (
        ("Subject", subject, Mode.TEXT),
        ("Preheader", preheader, Mode.TEXT),
        ("HTML body", html, Mode.HTML),
        ("Plain-text body", text, Mode.TEXT),
    )
    # Each part alone first, so that a position refers to what the marketer typed.
    for part, source, mode in parts:
        try:
            compile_template(source, mode=mode)
        except TemplateError as error:
            errors.append(_error(part, error))
    if errors:
        return Preview(rendered=None, errors=errors)
    try:
        compiled = compile_message(
            subject=subject,
            preheader=preheader,
            html=compose(layout=layout, body=html),
            text=text or None,
        )
        rendered = compiled.render(preview_context(workspace=workspace, contact=contact))
    except TemplateError as error:
        part = "Subject" if "subject" in error.message.lower() else "Layout"
        return Preview(rendered=None, errors=[_error(part, error)])
    except ContextError as error:
        return Preview(rendered=None, errors=[PreviewError(part="Contact", message=str(error))])
    return Preview(rendered=rendered)
