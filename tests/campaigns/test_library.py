import pytest

from accounts.errors import ApplicationError
from accounts.models import AuditEntry
from campaigns import library, services
from campaigns.models import Campaign, Template, TemplateVersion
from campaigns.starters import STARTERS, starter_get
from compliance.footer import NO_OPT_OUT_LINK, NO_POSTAL_ADDRESS
from tests.factories import UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

LAYOUT = (
    "<html><body><div>{{ content }}</div>"
    '<p>{{ postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


def _layout(marker: str) -> str:
    return LAYOUT.replace("<div>", f"<div><!-- {marker} -->")


def _numbers(template: Template) -> list[int]:
    return list(template.versions.order_by("number").values_list("number", flat=True))


def _verbs(template: Template) -> list[str]:
    return list(
        AuditEntry.objects.filter(target_id=str(template.pk), verb__startswith="template.")
        .order_by("pk")
        .values_list("verb", flat=True)
    )


def test_create_saves_version_one_and_audits(workspace):
    editor = UserFactory()
    template = library.template_create(
        workspace=workspace, name="  House   style ", html=LAYOUT, acting_user=editor
    )
    assert template.name == "House style"
    assert template.html == LAYOUT
    assert not template.is_starter
    version = template.versions.get()
    assert (version.number, version.html, version.created_by) == (1, LAYOUT, editor)
    assert version.workspace == workspace
    assert _verbs(template) == ["template.created"]


def test_update_adds_a_version_only_when_the_html_changes(workspace):
    editor = UserFactory()
    template = library.template_create(
        workspace=workspace, name="House", html=LAYOUT, acting_user=editor
    )
    library.template_update(template=template, name="House", html=LAYOUT, acting_user=editor)
    assert _numbers(template) == [1]

    renamed = library.template_update(
        template=template, name="Brand", html=LAYOUT, acting_user=editor
    )
    assert renamed.name == "Brand"
    assert _numbers(template) == [1]

    changed = library.template_update(
        template=template, name="Brand", html=_layout("two"), acting_user=editor
    )
    assert changed.html == _layout("two")
    assert _numbers(template) == [1, 2]
    assert template.versions.get(number=2).html == _layout("two")
    template.refresh_from_db()
    assert template.html == _layout("two")
    assert _verbs(template) == ["template.created", "template.updated", "template.updated"]


def test_restore_adds_a_new_version_and_keeps_history(workspace):
    template = library.template_create(
        workspace=workspace, name="House", html=_layout("one"), acting_user=None
    )
    library.template_update(template=template, name="House", html=_layout("two"), acting_user=None)

    restored = library.template_version_restore(template=template, number=1, acting_user=None)

    assert restored.html == _layout("one")
    assert _numbers(template) == [1, 2, 3]
    versions = {v.number: v.html for v in template.versions.all()}
    assert versions == {1: _layout("one"), 2: _layout("two"), 3: _layout("one")}
    entry = AuditEntry.objects.get(verb="template.restored", target_id=str(template.pk))
    assert entry.details == {"restored": 1, "version": 3}


def test_restore_of_the_current_html_or_a_missing_version_is_refused(workspace):
    template = library.template_create(
        workspace=workspace, name="House", html=LAYOUT, acting_user=None
    )
    with pytest.raises(ApplicationError, match="same as the current"):
        library.template_version_restore(template=template, number=1, acting_user=None)
    with pytest.raises(ApplicationError, match="no version 7"):
        library.template_version_restore(template=template, number=7, acting_user=None)
    assert _numbers(template) == [1]


def test_duplicate_is_a_copy_with_its_own_first_version(workspace):
    template = services.template_from_starter(workspace=workspace, starter=STARTERS[0])
    library.template_update(
        template=template, name=template.name, html=_layout("edited"), acting_user=None
    )
    editor = UserFactory()

    copy = library.template_duplicate(template=template, acting_user=editor)

    assert copy.pk != template.pk
    assert copy.name == f"Copy of {STARTERS[0].name}"
    assert copy.html == _layout("edited")
    assert not copy.is_starter
    assert copy.workspace == workspace
    assert [(v.number, v.created_by) for v in copy.versions.all()] == [(1, editor)]
    entry = AuditEntry.objects.get(verb="template.duplicated", target_id=str(copy.pk))
    assert entry.details == {"source_id": template.pk}


def test_duplicate_of_a_long_name_fits_the_column(workspace):
    template = library.template_create(
        workspace=workspace, name="x" * 120, html=LAYOUT, acting_user=None
    )
    copy = library.template_duplicate(template=template, acting_user=None)
    assert len(copy.name) == 120
    assert copy.name.startswith("Copy of x")


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("<p>no slot</p>", "Add a {{ content }} slot"),
        ("<p>{{ content }}</p><p>{{content}}</p>", "exactly one {{ content }}"),
        ("<p>{{ content }}</p>\n<p>{% for x in y %}</p>", "Line 2, column 4"),
        ("<p>{{ content }}</p>\n\n  <p>{{ oops</p>", "Line 3, column 6"),
    ],
)
def test_html_that_cannot_be_a_layout_is_refused_and_nothing_is_saved(workspace, html, message):
    with pytest.raises(ApplicationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        library.template_create(workspace=workspace, name="Bad", html=html, acting_user=None)
    template = library.template_create(
        workspace=workspace, name="Good", html=LAYOUT, acting_user=None
    )
    with pytest.raises(ApplicationError):
        library.template_update(template=template, name="Good", html=html, acting_user=None)
    template.refresh_from_db()
    assert template.html == LAYOUT
    assert Template.objects.count() == 1
    assert TemplateVersion.objects.count() == 1


def test_position_of_a_template_error_is_in_the_error_extra(workspace):
    with pytest.raises(ApplicationError) as caught:
        library.template_html_check(html="{{ content }}\n{% if %}")
    assert caught.value.extra == {"line": 2, "column": 1}


def test_a_blank_name_is_refused(workspace):
    with pytest.raises(ApplicationError, match="name"):
        library.template_create(workspace=workspace, name="   ", html=LAYOUT, acting_user=None)


def test_footer_problems_are_warnings_not_errors():
    workspace = WorkspaceFactory.build(postal_address="")
    bare = "<html><body>{{ content }}</body></html>"
    warnings = library.template_warnings(workspace=workspace, html=bare)
    assert NO_POSTAL_ADDRESS in warnings
    assert NO_OPT_OUT_LINK in warnings
    assert library.NO_POSTAL_ADDRESS_TAG in warnings
    complete = WorkspaceFactory.build(postal_address="1 Main St")
    assert library.template_warnings(workspace=complete, html=LAYOUT) == []


def test_a_layout_without_its_footer_is_still_saved(workspace):
    bare = "<html><body>{{ content }}</body></html>"
    template = library.template_create(
        workspace=workspace, name="Bare", html=bare, acting_user=None
    )
    assert template.versions.count() == 1


def test_starter_copy_gets_version_one_once(workspace):
    editor = UserFactory()
    starter = starter_get("announcement")
    first = services.template_from_starter(workspace=workspace, starter=starter, acting_user=editor)
    again = services.template_from_starter(workspace=workspace, starter=starter)
    assert first == again
    assert first.is_starter
    assert [(v.number, v.html, v.created_by) for v in first.versions.all()] == [
        (1, starter.html, editor)
    ]
    assert _verbs(first) == ["template.created"]


def test_campaign_from_a_starter_gives_the_copy_a_first_version(workspace):
    campaign = services.campaign_create(
        workspace=workspace, name="Launch", starter=STARTERS[1], acting_user=None
    )
    assert _numbers(campaign.template) == [1]


def test_campaign_update_sets_a_layout_of_its_workspace_only(workspace):
    campaign = services.campaign_create(
        workspace=workspace, name="Launch", starter=None, acting_user=None
    )
    own = library.template_create(workspace=workspace, name="Own", html=LAYOUT, acting_user=None)
    foreign = library.template_create(
        workspace=WorkspaceFactory(), name="Foreign", html=LAYOUT, acting_user=None
    )
    services.campaign_update(campaign=campaign, acting_user=None, template=own)
    campaign.refresh_from_db()
    assert campaign.template == own
    with pytest.raises(ApplicationError, match="layout of this workspace"):
        services.campaign_update(campaign=campaign, acting_user=None, template=foreign)
    campaign.refresh_from_db()
    assert campaign.template == own
    services.campaign_update(campaign=campaign, acting_user=None, template=None)
    campaign.refresh_from_db()
    assert campaign.template is None


def test_library_counts_campaigns_and_names_the_last_editor(workspace, django_assert_num_queries):
    first_editor, second_editor = UserFactory(), UserFactory()
    used = library.template_create(
        workspace=workspace, name="Used", html=LAYOUT, acting_user=first_editor
    )
    library.template_update(
        template=used, name="Used", html=_layout("2"), acting_user=second_editor
    )
    library.template_create(workspace=workspace, name="Unused", html=LAYOUT, acting_user=None)
    library.template_create(
        workspace=WorkspaceFactory(), name="Foreign", html=LAYOUT, acting_user=None
    )
    for name in ("A", "B"):
        campaign = Campaign.objects.create(workspace=workspace, name=name, template=used)
        assert campaign.template == used

    with django_assert_num_queries(1):
        rows = {
            t.name: (t.usage_count, t.last_editor)
            for t in library.template_library(workspace=workspace)
        }
    assert rows == {"Unused": (0, None), "Used": (2, second_editor.email)}


def test_preview_of_a_layout_shows_the_sample_body_and_the_footer(workspace):
    result = library.template_preview(workspace=workspace, html=LAYOUT)
    assert result.errors == []
    assert "Hello Alex" in result.rendered.html
    assert "1 Test Street" in result.rendered.html


def test_preview_of_a_broken_layout_names_line_and_column(workspace):
    result = library.template_preview(
        workspace=workspace, html="{{ content }}\n<p>{{ x|nope }}</p>"
    )
    assert result.rendered is None
    [error] = result.errors
    assert (error.part, error.line) == ("Layout", 2)
    assert error.column > 0


@pytest.mark.parametrize("starter", STARTERS, ids=lambda s: s.key)
def test_every_starter_is_a_valid_layout_without_warnings(workspace, starter):
    library.template_html_check(html=starter.html)
    assert library.template_warnings(workspace=workspace, html=starter.html) == []
    assert library.template_preview(workspace=workspace, html=starter.html).errors == []
