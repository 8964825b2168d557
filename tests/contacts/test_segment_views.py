"""Segment pages: the server-rendered rule builder, live count and preview, save, edit, delete."""

import pytest
from django.urls import reverse

from accounts.models import AuditEntry, Role
from contacts.forms_segments import tree_apply, tree_from_definition, tree_from_post
from contacts.models import Segment
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    FieldFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def url(name, workspace, **kwargs):
    return reverse(f"contacts:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


def rules_post(*rules, op="and", **extra) -> dict:
    """Builder form state: the root group and one rule per (field, operator, value[, value2])."""
    data = {"r__kind": "group", "r__op": op}
    for index, (field, operator, *values) in enumerate(rules):
        path = f"r-{index}"
        data |= {f"{path}__kind": "rule", f"{path}__field": field, f"{path}__operator": operator}
        for suffix, value in zip(("value", "value2"), values, strict=False):
            data[f"{path}__{suffix}"] = value
    return data | extra


@pytest.fixture
def ws():
    workspace = WorkspaceFactory()
    FieldFactory(workspace=workspace, key="age", label="Age", type="number")
    for age in (9, 10, 100):
        ContactFactory(workspace=workspace, email=f"age{age}@example.org", attributes={"age": age})
    return workspace


def test_builder_form_state_round_trips():
    data = rules_post(("attr:age", "between", "9", "10"), ("email", "contains", "a"), op="or")
    data |= {"r-2__kind": "group", "r-2__op": "and", "r-2-0__kind": "rule", "r-2-0__field": "x"}
    data |= {"r-9-0__kind": "rule", "bogus__kind": "rule"}  # orphans are dropped
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    query.update(data)
    tree = tree_from_post(query)
    assert tree.op == "or"
    assert [child.kind for child in tree.children] == ["rule", "rule", "group"]
    assert tree.children[2].children[0].field == "x"
    tree_apply(tree, "add-group:r-2")
    assert tree.children[2].children[1].op == "or"
    tree_apply(tree, "remove:r-0")
    assert tree.children[0].field == "email"
    again = tree_from_definition(
        {"op": "and", "rules": [{"field": "a", "operator": "b", "value": [1, 2]}]}
    )
    assert (again.children[0].value, again.children[0].value2) == ("1", "2")


def test_new_page_renders_the_builder(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    response = client.get(url("segment_new", ws))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="segment-rules"' in body
    assert 'hx-trigger="load, change delay:300ms"' in body
    assert '<optgroup label="Custom fields"><option value="attr:age">Age</option>' in body
    assert "<script" not in body.split("</head>")[1]


def test_builder_adds_and_removes_conditions_and_groups(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    builder = url("segment_builder", ws)
    response = client.post(
        builder, rules_post(("email", "contains", "a"), action="add-group:r"), headers=HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<div id="segment-rules"')
    assert 'name="r-1__kind" value="group"' in body
    assert 'name="r-1-0__kind" value="rule"' in body
    assert 'name="r-0__value" value="a"' in body  # typed values survive the re-render
    response = client.post(
        builder,
        rules_post(("email", "contains", "a"), ("first_name", "equals", "b"), action="remove:r-0"),
        headers=HTMX,
    )
    body = response.content.decode()
    assert 'name="r-0__value" value="b"' in body
    assert "r-1__kind" not in body


def test_changing_the_field_offers_that_fields_operators(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    response = client.post(
        url("segment_builder", ws), rules_post(("attr:age", "contains", "")), headers=HTMX
    )
    body = response.content.decode()
    assert '<option value="gt">&gt;</option>' in body
    assert '<option value="eq" selected>=</option>' in body  # the text operator did not carry over
    assert 'type="number"' in body


def test_preview_counts_and_lists_matching_contacts(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    response = client.post(
        url("segment_preview", ws), rules_post(("attr:age", "gt", "9")), headers=HTMX
    )
    body = response.content.decode()
    assert 'data-count="2"' in body
    assert "age10@example.org" in body
    assert "age100@example.org" in body
    assert "age9@example.org" not in body


def test_preview_explains_unfinished_conditions(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    response = client.post(
        url("segment_preview", ws), rules_post(("attr:age", "gt", "")), headers=HTMX
    )
    assert response.status_code == 200
    assert "Finish these conditions" in response.content.decode()
    assert "Age &gt;: enter a number." in response.content.decode()


def test_preview_ignores_rows_without_a_field_yet(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    response = client.post(url("segment_preview", ws), rules_post(("", "")), headers=HTMX)
    assert 'data-count="3"' in response.content.decode()


def test_save_creates_the_segment_with_an_audit_entry(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    news = ContactListFactory(workspace=ws)
    SubscriptionFactory(contact=ws.contact_set.get(email="age100@example.org"), contact_list=news)
    data = rules_post(
        ("attr:age", "gte", "10"), ("list", "subscribed", str(news.pk)), name="Big", description=""
    )
    response = client.post(url("segment_new", ws), data)
    segment = Segment.objects.get(workspace=ws, name="Big")
    assert response.status_code == 302
    assert response["Location"] == url("segment_detail", ws, segment_id=segment.pk)
    assert segment.definition == {
        "op": "and",
        "rules": [
            {"field": "attr:age", "operator": "gte", "value": 10},
            {"field": "list", "operator": "subscribed", "value": news.pk},
        ],
    }
    assert segment.created_by == client.user
    assert AuditEntry.objects.get(verb="segment.created").target_id == str(segment.pk)
    detail = client.get(response["Location"]).content.decode()
    assert 'data-count="1"' in detail
    assert "Age ≥ 10" in detail
    assert f"List membership is subscribed to {news.name}" in detail


def test_save_with_bad_values_shows_the_error_on_the_rule(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    data = rules_post(("attr:age", "gt", "lots"), name="Bad")
    response = client.post(url("segment_new", ws), data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "is not a number" in body
    assert 'id="r-0__error"' in body
    assert not Segment.objects.exists()


def test_builder_buttons_work_without_htmx(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    response = client.post(
        url("segment_new", ws),
        rules_post(("email", "contains", "a"), name="X", action="add-rule:r"),
    )
    assert response.status_code == 200
    assert 'name="r-1__kind" value="rule"' in response.content.decode()
    assert not Segment.objects.exists()


def test_edit_updates_and_audits(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    segment = Segment.objects.create(
        workspace=ws, name="Old", definition={"op": "and", "rules": []}
    )
    page = client.get(url("segment_edit", ws, segment_id=segment.pk))
    assert 'value="Old"' in page.content.decode()
    response = client.post(
        url("segment_edit", ws, segment_id=segment.pk),
        rules_post(("attr:age", "lt", "10"), name="Young"),
    )
    assert response.status_code == 302
    segment.refresh_from_db()
    assert segment.name == "Young"
    assert segment.definition["rules"] == [{"field": "attr:age", "operator": "lt", "value": 10}]
    assert AuditEntry.objects.filter(verb="segment.updated", target_id=str(segment.pk)).exists()


def test_viewers_read_segments_but_cannot_edit(ws, member_client):
    segment = Segment.objects.create(
        workspace=ws,
        name="Adults",
        definition={"rules": [{"field": "attr:age", "operator": "gt", "value": 18}]},
    )
    viewer = member_client(ws, Role.VIEWER)
    listing = viewer.get(url("segment_list", ws)).content.decode()
    assert "Adults" in listing
    assert url("segment_new", ws) not in listing
    assert viewer.get(url("segment_detail", ws, segment_id=segment.pk)).status_code == 200
    count = viewer.get(url("segment_count", ws, segment_id=segment.pk), headers=HTMX)
    assert count.content.decode().strip() == "<strong>1</strong>"
    assert viewer.get(url("segment_edit", ws, segment_id=segment.pk)).status_code == 403
    assert viewer.post(url("segment_delete", ws, segment_id=segment.pk)).status_code == 403
    assert Segment.objects.filter(pk=segment.pk).exists()


def test_delete_removes_the_segment_with_an_audit_entry(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    segment = Segment.objects.create(workspace=ws, name="Gone", definition={})
    response = client.post(url("segment_delete", ws, segment_id=segment.pk), headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == url("segment_list", ws)
    assert not Segment.objects.filter(pk=segment.pk).exists()
    assert AuditEntry.objects.get(verb="segment.deleted").target_label == "Gone"


def test_another_workspaces_segment_is_not_found(ws, member_client):
    client = member_client(ws, Role.OWNER)
    foreign = Segment.objects.create(workspace=WorkspaceFactory(), name="Theirs", definition={})
    for name in ("segment_detail", "segment_edit", "segment_count"):
        assert client.get(url(name, ws, segment_id=foreign.pk)).status_code == 404
    assert client.post(url("segment_delete", ws, segment_id=foreign.pk)).status_code == 404
    assert Segment.objects.filter(pk=foreign.pk).exists()


def test_list_of_another_workspace_cannot_be_posted_into_a_segment(ws, member_client):
    client = member_client(ws, Role.EDITOR)
    foreign = ContactListFactory()
    response = client.post(
        url("segment_new", ws), rules_post(("list", "any", str(foreign.pk)), name="Sneaky")
    )
    assert response.status_code == 400
    assert "no such option" in response.content.decode()
    assert not Segment.objects.exists()


def test_segment_list_page_counts_lazily(ws, member_client, django_assert_max_num_queries):
    client = member_client(ws, Role.EDITOR)
    for index in range(5):
        Segment.objects.create(workspace=ws, name=f"S{index}", definition={})
    client.get(url("segment_list", ws))  # the session and membership are read once
    with django_assert_max_num_queries(8):
        body = client.get(url("segment_list", ws)).content.decode()
    assert body.count('hx-trigger="load"') == 5
