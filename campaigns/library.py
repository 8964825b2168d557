"""The template library: a workspace's layouts, their saved versions, copies and restores.

Every change of a layout's HTML adds a TemplateVersion numbered one past the highest, and
restoring an old version adds a new one with that HTML: history is never rewritten, so a
version number always names the HTML it was saved with. `Template.html` is the newest.
"""

import re

from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from campaigns import preview
from campaigns.models import Template, TemplateVersion
from campaigns.rendering import TemplateError, compile_template
from campaigns.rendering.engine import Mode
from compliance.footer import POSTAL_ADDRESS_PLACEHOLDER, footer_problems

NAME_MAX_LENGTH = Template._meta.get_field("name").max_length
SLOT = re.compile(r"\{\{\s*content\s*\}\}")
_POSTAL_ADDRESS = re.compile(r"\{\{\s*postal_address\s*\}\}")
NO_SLOT = "Add a {{ content }} slot where the campaign's body goes."
MANY_SLOTS = "Keep exactly one {{ content }} slot: the campaign's body goes in one place."
NO_POSTAL_ADDRESS_TAG = (
    f"Add {POSTAL_ADDRESS_PLACEHOLDER} to the footer: every email must show your postal address."
)

# What the template editor's preview puts in the slot and in the inbox line.
SAMPLE_SUBJECT = "Your monthly update, {{ first_name }}"
SAMPLE_PREHEADER = "A sample body in this layout"
SAMPLE_BODY = (
    '<h1>Hello {{ first_name|default:"there" }},</h1>\n'
    "<p>This is sample content: a campaign's body goes where the layout has its "
    "<code>&#123;&#123; content &#125;&#125;</code> slot.</p>\n"
    "<ul><li>Short paragraphs read well on phones.</li>"
    "<li>Links and buttons take the layout's colours.</li></ul>\n"
    '<p><a class="button" href="https://example.com/">Read more</a></p>'
)


# ---------------------------------------------------------------- checks


def _html_problem(html: str) -> preview.PreviewError | None:
    try:
        compile_template(html, mode=Mode.HTML)
    except TemplateError as error:
        return preview.PreviewError(
            part="Layout", message=error.message, line=error.line, column=error.column
        )
    slots = len(SLOT.findall(html))
    if slots != 1:
        return preview.PreviewError(part="Layout", message=MANY_SLOTS if slots else NO_SLOT)
    return None


def template_html_check(*, html: str) -> None:
    """ApplicationError (with line and column) for HTML that cannot be a layout."""
    problem = _html_problem(html)
    if problem is not None:
        where = f"Line {problem.line}, column {problem.column}: " if problem.line else ""
        raise ApplicationError(
            f"{where}{problem.message}", extra={"line": problem.line, "column": problem.column}
        )


def template_warnings(*, workspace: Workspace, html: str) -> list[str]:
    """What the footer policy will object to at send time: shown, never blocking a save,
    since a campaign's body may carry the footer itself."""
    warnings = footer_problems(workspace=workspace, html=html)
    if not _POSTAL_ADDRESS.search(html):
        warnings.append(NO_POSTAL_ADDRESS_TAG)
    return warnings


def _clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ApplicationError("Give the template a name.")
    if len(name) > NAME_MAX_LENGTH:
        raise ApplicationError(f"Keep the name to {NAME_MAX_LENGTH} characters at most.")
    return name


# ---------------------------------------------------------------- writes


def _version_add(*, template: Template, html: str, acting_user: User | None) -> TemplateVersion:
    # The caller holds the template's row lock, so two saves cannot take the same number.
    last = template.versions.order_by("-number").values_list("number", flat=True).first() or 0
    return TemplateVersion.objects.create(
        workspace_id=template.workspace_id,
        template=template,
        number=last + 1,
        html=html,
        created_by=acting_user if acting_user is not None and acting_user.pk else None,
    )


def _lock(template: Template) -> None:
    """Lock the row (one save at a time takes version numbers) and refresh the instance."""
    template.refresh_from_db(from_queryset=Template.objects.select_for_update())


@transaction.atomic
def template_create(
    *, workspace: Workspace, name: str, html: str, acting_user: User | None
) -> Template:
    """A new layout of the workspace, saved as its version 1."""
    name = _clean_name(name)
    template_html_check(html=html)
    template = Template.objects.create(workspace=workspace, name=name, html=html)
    _version_add(template=template, html=html, acting_user=acting_user)
    audit_record(workspace=workspace, actor=acting_user, verb="template.created", target=template)
    return template


@transaction.atomic
def template_update(
    *, template: Template, name: str, html: str, acting_user: User | None
) -> Template:
    """Rename and save a layout; a new version only when the HTML changed."""
    name = _clean_name(name)
    template_html_check(html=html)
    _lock(template)
    html_changed, name_changed = html != template.html, name != template.name
    if not html_changed and not name_changed:
        return template
    version = (
        _version_add(template=template, html=html, acting_user=acting_user)
        if html_changed
        else None
    )
    template.name, template.html, template.updated_at = name, html, timezone.now()
    template.save(update_fields=["name", "html", "updated_at"])
    audit_record(
        workspace=template.workspace,
        actor=acting_user,
        verb="template.updated",
        target=template,
        details={"version": version.number if version else None, "renamed": name_changed},
    )
    return template


@transaction.atomic
def template_duplicate(*, template: Template, acting_user: User | None) -> Template:
    """A copy of the layout with a history of its own (its v1 is the current HTML)."""
    name = f"Copy of {template.name}"[:NAME_MAX_LENGTH]
    copy = Template.objects.create(workspace=template.workspace, name=name, html=template.html)
    _version_add(template=copy, html=copy.html, acting_user=acting_user)
    audit_record(
        workspace=template.workspace,
        actor=acting_user,
        verb="template.duplicated",
        target=copy,
        details={"source_id": template.pk},
    )
    return copy


@transaction.atomic
def template_version_restore(
    *, template: Template, number: int, acting_user: User | None
) -> Template:
    """Make an old version current again by saving its HTML as the newest version."""
    _lock(template)
    old = template.versions.filter(number=number).first()
    if old is None:
        raise ApplicationError(f"There is no version {number} of this template.")
    if old.html == template.html:
        raise ApplicationError(f"Version {number} is the same as the current HTML.")
    template_html_check(html=old.html)
    version = _version_add(template=template, html=old.html, acting_user=acting_user)
    template.html, template.updated_at = old.html, timezone.now()
    template.save(update_fields=["html", "updated_at"])
    audit_record(
        workspace=template.workspace,
        actor=acting_user,
        verb="template.restored",
        target=template,
        details={"restored": number, "version": version.number},
    )
    return template


# ---------------------------------------------------------------- reads


def template_library(*, workspace: Workspace) -> QuerySet[Template]:
    """The workspace's layouts with how many campaigns use each and who saved it last."""
    last_version = TemplateVersion.objects.filter(template=OuterRef("pk")).order_by("-number")
    return (
        Template.objects.for_workspace(workspace)
        .annotate(
            usage_count=Count("campaigns"),
            last_editor=Subquery(last_version.values("created_by__email")[:1]),
        )
        .order_by("name", "pk")
    )


def template_get(*, workspace: Workspace, template_id: int) -> Template:
    template = Template.objects.for_workspace(workspace).filter(pk=template_id).first()
    if template is None:
        raise Http404("No such template.")
    return template


def template_versions(*, template: Template) -> QuerySet[TemplateVersion]:
    return template.versions.select_related("created_by").order_by("-number")


def template_version_get(*, template: Template, number: int) -> TemplateVersion:
    version = template.versions.filter(number=number).first()
    if version is None:
        raise Http404("No such version.")
    return version


def template_preview(*, workspace: Workspace, html: str) -> preview.Preview:
    """The layout with a sample body, for sample contact values.

    The layout is checked alone first, so that a position refers to what was typed.
    """
    problem = _html_problem(html)
    if problem is not None:
        return preview.Preview(rendered=None, errors=[problem])
    return preview.campaign_preview(
        workspace=workspace,
        subject=SAMPLE_SUBJECT,
        preheader=SAMPLE_PREHEADER,
        html=SAMPLE_BODY,
        text="",
        layout=html,
        contact=None,
    )
