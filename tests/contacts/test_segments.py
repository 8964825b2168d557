"""Segments: every condition's operators, typed comparisons, nesting, one SQL query, isolation."""

import datetime as dt
import zoneinfo

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.errors import ApplicationError
from accounts.models import AuditEntry
from contacts.models import Contact, Segment
from contacts.segments import compiler, services
from contacts.segments.compiler import (
    MAX_DEPTH,
    SegmentDefinitionError,
    definition_clean,
    definition_contacts,
    segment_contacts,
)
from contacts.segments.registry import Condition, Operator, ValueKind, segment_conditions
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    FieldFactory,
    SubscriptionFactory,
    UserFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2024, 6, 15, 12, 0, tzinfo=dt.UTC)
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def rule(field, operator, value=None) -> dict:
    found = {"field": field, "operator": operator}
    if value is not None:
        found["value"] = value
    return found


def matching(workspace, *rules, op="and") -> set[str]:
    """Local parts of the emails of the contacts that match the rules."""
    contacts = definition_contacts(
        workspace=workspace, definition={"op": op, "rules": list(rules)}, now=NOW
    )
    return {email.split("@")[0] for email in contacts.values_list("email", flat=True)}


def contact(workspace, name, **fields) -> Contact:
    return ContactFactory(workspace=workspace, email=f"{name}@example.org", **fields)


@pytest.fixture
def ws():
    return WorkspaceFactory(time_zone="Europe/Berlin")


# Text columns ------------------------------------------------------------------------------


@pytest.fixture
def named(ws):
    contact(ws, "anna", first_name="Anna", last_name="Smith")
    contact(ws, "anneliese", first_name="anneliese", last_name="Smithers")
    contact(ws, "bob", first_name="Bob", last_name="Jones")
    contact(ws, "nobody", first_name="", last_name="")
    return ws


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("equals", "ANNA", {"anna"}),
        ("not_equals", "anna", {"anneliese", "bob", "nobody"}),
        ("contains", "NN", {"anna", "anneliese"}),
        ("not_contains", "nn", {"bob", "nobody"}),
        ("starts_with", "ann", {"anna", "anneliese"}),
        ("ends_with", "SE", {"anneliese"}),
        ("is_empty", None, {"nobody"}),
        ("is_not_empty", None, {"anna", "anneliese", "bob"}),
    ],
)
def test_first_name_operators(named, operator, value, expected):
    assert matching(named, rule("first_name", operator, value)) == expected


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("equals", "smith", {"anna"}),
        ("not_equals", "smith", {"anneliese", "bob", "nobody"}),
        ("contains", "mith", {"anna", "anneliese"}),
        ("not_contains", "mith", {"bob", "nobody"}),
        ("starts_with", "jo", {"bob"}),
        ("ends_with", "ers", {"anneliese"}),
        ("is_empty", None, {"nobody"}),
        ("is_not_empty", None, {"anna", "anneliese", "bob"}),
    ],
)
def test_last_name_operators(named, operator, value, expected):
    assert matching(named, rule("last_name", operator, value)) == expected


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("equals", "ANNA@example.org", {"anna"}),
        ("not_equals", "anna@example.org", {"anneliese", "bob", "nobody"}),
        ("contains", "nne", {"anneliese"}),
        ("not_contains", "nn", {"bob", "nobody"}),
        ("starts_with", "bo", {"bob"}),
        ("ends_with", "BODY@EXAMPLE.ORG", {"nobody"}),
    ],
)
def test_email_operators(named, operator, value, expected):
    assert matching(named, rule("email", operator, value)) == expected


def test_text_wildcards_are_literal(ws):
    contact(ws, "percent", first_name="100% real")
    contact(ws, "plain", first_name="100 real")
    assert matching(ws, rule("first_name", "contains", "0%")) == {"percent"}
    assert matching(ws, rule("first_name", "contains", "_")) == set()


# Custom attributes, typed by their Field ---------------------------------------------------


@pytest.fixture
def ages(ws):
    FieldFactory(workspace=ws, key="age", label="Age", type="number")
    contact(ws, "n9", attributes={"age": 9})
    contact(ws, "n10", attributes={"age": 10})
    contact(ws, "n100", attributes={"age": 100})
    contact(ws, "n9half", attributes={"age": 9.5})
    contact(ws, "text", attributes={"age": "abc"})
    contact(ws, "textnum", attributes={"age": "10"})
    contact(ws, "bool", attributes={"age": True})
    contact(ws, "missing", attributes={"other": 1})
    return ws


WRONG_OR_MISSING = {"text", "textnum", "bool", "missing"}


def test_number_attribute_compares_as_numbers_not_text(ages):
    # As text, "9" > "10" and "100" < "9"; as numbers the order is 9 < 10 < 100.
    assert matching(ages, rule("attr:age", "gt", 9)) == {"n10", "n100", "n9half"}
    assert matching(ages, rule("attr:age", "lt", "10")) == {"n9", "n9half"}
    sql = str(
        definition_contacts(workspace=ages, definition={"rules": [rule("attr:age", "gt", 9)]}).query
    )
    assert "::numeric" in sql


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("eq", 10, {"n10"}),
        ("eq", "9,5", {"n9half"}),
        ("neq", 10, {"n9", "n100", "n9half", *WRONG_OR_MISSING}),
        ("gt", 9.5, {"n10", "n100"}),
        ("gte", 10, {"n10", "n100"}),
        ("lt", 10, {"n9", "n9half"}),
        ("lte", 10, {"n9", "n9half", "n10"}),
        ("between", [9, "10"], {"n9", "n9half", "n10"}),
        ("is_set", None, {"n9", "n10", "n100", "n9half"}),
        ("is_not_set", None, WRONG_OR_MISSING),
    ],
)
def test_number_attribute_operators(ages, operator, value, expected):
    assert matching(ages, rule("attr:age", operator, value)) == expected


@pytest.fixture
def renewals(ws):
    FieldFactory(workspace=ws, key="renewal", label="Renewal", type="date")
    contact(ws, "dec31", attributes={"renewal": "2023-12-31"})
    contact(ws, "jan02", attributes={"renewal": "2024-01-02"})
    contact(ws, "leap", attributes={"renewal": "2024-02-29"})
    contact(ws, "feb30", attributes={"renewal": "2023-02-30"})  # the right shape, no such day
    contact(ws, "month13", attributes={"renewal": "2023-13-01"})
    contact(ws, "dmy", attributes={"renewal": "31/12/2023"})
    contact(ws, "number", attributes={"renewal": 20231231})
    contact(ws, "missing")
    return ws


BAD_DATES = {"feb30", "month13", "dmy", "number", "missing"}


def test_dates_compare_across_years_with_day_first_input(renewals):
    # "31/12/2023" and "02/01/2024" as text would sort the other way round.
    assert matching(renewals, rule("attr:renewal", "before", "02/01/2024")) == {"dec31"}
    assert matching(renewals, rule("attr:renewal", "after", "31/12/2023")) == {"jan02", "leap"}


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("on", "31/12/2023", {"dec31"}),
        ("on", "2024-02-29", {"leap"}),
        ("before", "2024-01-02", {"dec31"}),
        ("after", "2024-01-02", {"leap"}),
        ("between", ["01/01/2024", "2024-12-31"], {"jan02", "leap"}),
        ("is_set", None, {"dec31", "jan02", "leap"}),
        ("is_not_set", None, BAD_DATES),
    ],
)
def test_date_attribute_operators(renewals, operator, value, expected):
    assert matching(renewals, rule("attr:renewal", operator, value)) == expected


@pytest.fixture
def vips(ws):
    FieldFactory(workspace=ws, key="vip", label="VIP", type="boolean")
    contact(ws, "yes", attributes={"vip": True})
    contact(ws, "no", attributes={"vip": False})
    contact(ws, "text", attributes={"vip": "true"})
    contact(ws, "one", attributes={"vip": 1})
    contact(ws, "missing")
    return ws


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("is_true", {"yes"}),
        ("is_false", {"no"}),
        ("is_not_set", {"text", "one", "missing"}),
    ],
)
def test_boolean_attribute_operators(vips, operator, expected):
    assert matching(vips, rule("attr:vip", operator)) == expected


@pytest.fixture
def plans(ws):
    FieldFactory(workspace=ws, key="plan", label="Plan", type="choice", choices=["free", "pro"])
    contact(ws, "pro", attributes={"plan": "pro"})
    contact(ws, "free", attributes={"plan": "free"})
    contact(ws, "number", attributes={"plan": 3})
    contact(ws, "missing")
    return ws


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("is", "pro", {"pro"}),
        ("is_not", "pro", {"free", "number", "missing"}),
        ("is_set", None, {"pro", "free"}),
        ("is_not_set", None, {"number", "missing"}),
    ],
)
def test_choice_attribute_operators(plans, operator, value, expected):
    assert matching(plans, rule("attr:plan", operator, value)) == expected


def test_choice_attribute_refuses_a_value_outside_its_choices(plans):
    with pytest.raises(SegmentDefinitionError, match="no such option"):
        matching(plans, rule("attr:plan", "is", "gold"))


@pytest.fixture
def cities(ws):
    FieldFactory(workspace=ws, key="city", label="City", type="text")
    contact(ws, "berlin", attributes={"city": "Berlin"})
    contact(ws, "mitte", attributes={"city": "berlin-mitte"})
    contact(ws, "number", attributes={"city": 5})
    contact(ws, "blank", attributes={"city": ""})
    contact(ws, "missing")
    return ws


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("equals", "BERLIN", {"berlin"}),
        ("not_equals", "berlin", {"mitte", "number", "blank", "missing"}),
        ("contains", "mit", {"mitte"}),
        ("not_contains", "mit", {"berlin", "number", "blank", "missing"}),
        ("starts_with", "berlin", {"berlin", "mitte"}),
        ("ends_with", "TE", {"mitte"}),
        ("is_empty", None, {"number", "blank", "missing"}),
        ("is_not_empty", None, {"berlin", "mitte"}),
    ],
)
def test_text_attribute_operators(cities, operator, value, expected):
    assert matching(cities, rule("attr:city", operator, value)) == expected


def test_attribute_key_with_double_underscore_and_quotes_is_one_key(ws):
    FieldFactory(workspace=ws, key="a__b", label="Odd", type="number")
    contact(ws, "odd", attributes={"a__b": 5, "a": {"b": 5}})
    assert matching(ws, rule("attr:a__b", "eq", 5)) == {"odd"}


# Contact status and created date -----------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("is", "bounced", {"bounced"}),
        ("is_not", "active", {"bounced", "unsubscribed"}),
    ],
)
def test_status_operators(ws, operator, value, expected):
    for status in ("active", "bounced", "unsubscribed"):
        contact(ws, status, status=status)
    assert matching(ws, rule("status", operator, value)) == expected


@pytest.fixture
def added(ws):
    contact(ws, "yesterday", created_at=NOW - dt.timedelta(days=1))
    contact(ws, "lastmonth", created_at=NOW - dt.timedelta(days=20))
    contact(ws, "lastyear", created_at=NOW - dt.timedelta(days=200))
    # 23:30 on 31 December in Berlin is still 2023 there, though 22:30 UTC.
    contact(ws, "newyearseve", created_at=dt.datetime(2023, 12, 31, 23, 30, tzinfo=BERLIN))
    contact(ws, "jan2", created_at=dt.datetime(2024, 1, 2, 9, 0, tzinfo=BERLIN))
    return ws


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("in_last_days", 7, {"yesterday"}),
        ("in_last_days", "30", {"yesterday", "lastmonth"}),
        ("not_in_last_days", 30, {"lastyear", "newyearseve", "jan2"}),
        ("on", "31/12/2023", {"newyearseve"}),
        ("before", "2024-01-01", {"lastyear", "newyearseve"}),
        ("after", "01/01/2024", {"jan2", "lastmonth", "yesterday"}),
        ("between", ["2023-12-31", "02/01/2024"], {"newyearseve", "jan2"}),
    ],
)
def test_created_date_operators(added, operator, value, expected):
    assert matching(added, rule("created_at", operator, value)) == expected


# Engagement facts --------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["last_sent_at", "last_opened_at", "last_clicked_at"])
@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("in_last_days", 30, {"recent"}),
        ("not_in_last_days", 30, {"lapsed", "never"}),
        ("ever", None, {"recent", "lapsed"}),
        ("never", None, {"never"}),
    ],
)
def test_engagement_operators(ws, column, operator, value, expected):
    contact(ws, "recent", **{column: NOW - dt.timedelta(days=2)})
    contact(ws, "lapsed", **{column: NOW - dt.timedelta(days=60)})
    contact(ws, "never")
    # Another fact's recency must not leak into this one.
    contact(ws, "elsewhere", last_sent_at=NOW, last_opened_at=NOW, last_clicked_at=NOW)
    found = matching(ws, rule(column, operator, value)) - {"elsewhere"}
    assert found == expected


# Lists -------------------------------------------------------------------------------------


@pytest.fixture
def listed(ws):
    news, other = ContactListFactory(workspace=ws), ContactListFactory(workspace=ws)
    for name, status in (("sub", "subscribed"), ("pend", "pending"), ("unsub", "unsubscribed")):
        SubscriptionFactory(contact=contact(ws, name), contact_list=news, status=status)
    SubscriptionFactory(contact=contact(ws, "other"), contact_list=other)
    contact(ws, "none")
    return news


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        ("subscribed", {"sub"}),
        ("not_subscribed", {"pend", "unsub", "other", "none"}),
        ("pending", {"pend"}),
        ("unsubscribed", {"unsub"}),
        ("any", {"sub", "pend", "unsub"}),
        ("not_in", {"other", "none"}),
    ],
)
def test_list_operators(listed, operator, expected):
    assert matching(listed.workspace, rule("list", operator, listed.pk)) == expected


def test_list_of_another_workspace_is_refused(ws):
    foreign = ContactListFactory()
    SubscriptionFactory(contact=ContactFactory(workspace=foreign.workspace), contact_list=foreign)
    with pytest.raises(SegmentDefinitionError, match="no such option") as raised:
        definition_contacts(workspace=ws, definition={"rules": [rule("list", "any", foreign.pk)]})
    assert raised.value.problems[0].path == "0"


# Groups, validation, SQL -------------------------------------------------------------------


def test_nested_a_and_b_or_c(ws):
    FieldFactory(workspace=ws, key="age", label="Age", type="number")
    news = ContactListFactory(workspace=ws)
    a_b = contact(ws, "a_b", attributes={"age": 30})
    SubscriptionFactory(contact=a_b, contact_list=news)
    contact(ws, "a_c", attributes={"age": 30}, last_opened_at=NOW)
    contact(ws, "a_only", attributes={"age": 30})
    b_c = contact(ws, "b_c", attributes={"age": 5}, last_opened_at=NOW)
    SubscriptionFactory(contact=b_c, contact_list=news)
    definition = {
        "op": "and",
        "rules": [
            rule("attr:age", "gte", 18),
            {
                "op": "or",
                "rules": [
                    rule("list", "subscribed", news.pk),
                    rule("last_opened_at", "in_last_days", 7),
                ],
            },
        ],
    }
    found = definition_contacts(workspace=ws, definition=definition, now=NOW)
    assert {c.email.split("@")[0] for c in found} == {"a_b", "a_c"}
    # And the mirror image: (A OR B) AND C, three levels deep.
    deep = {
        "op": "or",
        "rules": [
            {"op": "and", "rules": [{"op": "or", "rules": [rule("email", "starts_with", "b_")]}]},
            rule("first_name", "equals", "nobody-has-this"),
        ],
    }
    assert matching(ws, *deep["rules"], op="or") == {"b_c"}


def test_empty_definition_matches_every_contact_of_the_workspace_only(ws):
    contact(ws, "mine")
    ContactFactory(workspace=WorkspaceFactory(), email="theirs@example.org")
    assert matching(ws) == {"mine"}
    assert definition_contacts(workspace=ws, definition={}).count() == 1


def test_segment_never_counts_another_workspaces_contacts(ws):
    other = WorkspaceFactory()
    for workspace in (ws, other):
        FieldFactory(workspace=workspace, key="age", label="Age", type="number")
        ContactFactory(workspace=workspace, attributes={"age": 40})
    segment = Segment.objects.create(
        workspace=ws, name="Adults", definition={"rules": [rule("attr:age", "gt", 18)]}
    )
    assert segment_contacts(segment=segment).count() == 1
    assert set(segment_contacts(segment=segment).values_list("workspace", flat=True)) == {ws.pk}


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"rules": [rule("shoe_size", "eq", 4)]}, "Unknown field 'shoe_size'"),
        ({"rules": [rule("first_name", "gt", "a")]}, "unknown operator 'gt'"),
        ({"rules": [rule("attr:age", "gt", "many")]}, "'many' is not a number"),
        ({"rules": [rule("attr:age", "gt")]}, "enter a number"),
        ({"rules": [rule("attr:age", "between", [10, 9])]}, "must not be greater"),
        ({"rules": [rule("attr:age", "between", 10)]}, "needs two values"),
        ({"rules": [rule("attr:born", "on", "31.02.2023x")]}, "is not a date"),
        ({"rules": [rule("created_at", "in_last_days", 0)]}, "between 1 and"),
        ({"rules": [rule("created_at", "in_last_days", "soon")]}, "number of days"),
        ({"rules": [rule("status", "is", "asleep")]}, "no such option"),
        ({"rules": [rule("first_name", "equals", "  ")]}, "enter a value"),
        ({"op": "xor", "rules": []}, "and/or"),
        ({"op": "and", "rules": "email"}, "list of rules"),
        ({"rules": ["email"]}, "must be an object"),
    ],
)
def test_invalid_definitions_are_refused_with_a_clear_problem(ws, definition, message):
    FieldFactory(workspace=ws, key="age", label="Age", type="number")
    FieldFactory(workspace=ws, key="born", label="Born", type="date")
    with pytest.raises(SegmentDefinitionError) as raised:
        definition_clean(workspace=ws, definition=definition)
    assert message in raised.value.message


def test_every_problem_is_reported_with_its_path(ws):
    definition = {
        "rules": [
            rule("email", "contains", "a"),
            {"op": "or", "rules": [rule("nope", "eq", 1), rule("created_at", "before", "x")]},
        ]
    }
    with pytest.raises(SegmentDefinitionError) as raised:
        definition_clean(workspace=ws, definition=definition)
    assert [problem.path for problem in raised.value.problems] == ["1.0", "1.1"]


def test_nesting_deeper_than_the_limit_is_refused(ws):
    definition = {"op": "and", "rules": [rule("email", "contains", "a")]}
    for _ in range(MAX_DEPTH):
        definition = {"op": "and", "rules": [definition]}
    with pytest.raises(SegmentDefinitionError, match="nested"):
        definition_clean(workspace=ws, definition=definition)


def test_clean_normalises_values(ws):
    FieldFactory(workspace=ws, key="age", label="Age", type="number")
    news = ContactListFactory(workspace=ws)
    cleaned = definition_clean(
        workspace=ws,
        definition={
            "rules": [
                rule("attr:age", "between", ["9", "10,5"]),
                rule("created_at", "between", ["31/12/2023", "02.01.2024"]),
                rule("list", "subscribed", str(news.pk)),
                rule("last_opened_at", "never", "ignored"),
            ]
        },
    )
    assert cleaned == {
        "op": "and",
        "rules": [
            rule("attr:age", "between", [9, 10.5]),
            rule("created_at", "between", ["2023-12-31", "2024-01-02"]),
            rule("list", "subscribed", news.pk),
            rule("last_opened_at", "never"),
        ],
    }


def test_count_is_one_sql_query_with_every_condition_in_it(ws, django_assert_num_queries):
    FieldFactory(workspace=ws, key="age", label="Age", type="number")
    news = ContactListFactory(workspace=ws)
    hit = contact(ws, "hit", attributes={"age": 40}, created_at=NOW - dt.timedelta(days=3))
    SubscriptionFactory(contact=hit, contact_list=news)
    contact(ws, "miss", attributes={"age": 40}, created_at=NOW - dt.timedelta(days=3))
    segment = Segment.objects.create(
        workspace=ws,
        name="Three conditions",
        definition={
            "op": "and",
            "rules": [
                rule("attr:age", "gt", 18),
                rule("list", "subscribed", news.pk),
                rule("created_at", "in_last_days", 90),
            ],
        },
    )
    contacts = segment_contacts(segment=segment, now=NOW)  # reads fields and lists once
    with CaptureQueriesContext(connection) as captured, django_assert_num_queries(1):
        assert contacts.count() == 1
    sql = captured.captured_queries[0]["sql"]
    print(sql)
    assert sql.startswith("SELECT COUNT(*)")
    assert "::numeric" in sql
    assert "EXISTS(SELECT" in sql
    assert '"contacts_contact"."created_at" >=' in sql
    assert f'"contacts_contact"."workspace_id" = {ws.pk}' in sql


def test_segment_is_usable_as_a_subquery_audience(ws):
    FieldFactory(workspace=ws, key="age", label="Age", type="number")
    contact(ws, "adult", attributes={"age": 40})
    contact(ws, "child", attributes={"age": 4})
    segment = Segment.objects.create(
        workspace=ws, name="Adults", definition={"rules": [rule("attr:age", "gte", 18)]}
    )
    audience = Contact.objects.filter(pk__in=segment_contacts(segment=segment).values("pk"))
    assert list(audience.values_list("email", flat=True)) == ["adult@example.org"]
    assert "IN (SELECT" in str(audience.query)


# The registry ------------------------------------------------------------------------------


@pytest.fixture
def email_domain_condition():
    def compile_domain(ctx, operator, value):
        q = Q(email__iendswith=f"@{value}")
        return q if operator == "is" else ~q

    def clean_domain(ctx, operator, value):
        if "@" in value:
            raise ValueError("a domain has no @.")
        return value.lower()

    condition = segment_conditions.register(
        Condition(
            key="email_domain",
            label="Email domain",
            operators=(
                Operator("is", "is", ValueKind.TEXT),
                Operator("is_not", "is not", ValueKind.TEXT),
            ),
            compile=compile_domain,
            clean=clean_domain,
        )
    )
    yield condition
    segment_conditions.unregister(condition.key)


def test_a_registered_condition_is_usable_in_definitions(ws, email_domain_condition):
    contact(ws, "ann")
    ContactFactory(workspace=ws, email="bob@Example.COM")
    assert matching(ws, rule("email_domain", "is", "EXAMPLE.com")) == {"bob"}
    assert matching(
        ws, rule("email_domain", "is_not", "example.com"), rule("first_name", "is_not_empty")
    ) == {"ann"}
    with pytest.raises(SegmentDefinitionError, match="a domain has no @"):
        matching(ws, rule("email_domain", "is", "@example.com"))


def test_registering_a_taken_key_twice_is_refused(email_domain_condition):
    with pytest.raises(ValueError, match="already registered"):
        segment_conditions.register(email_domain_condition)
    assert "email" in segment_conditions.for_workspace(WorkspaceFactory())


def test_choice_days_condition_from_a_higher_app(ws):
    """The shape the tracking app uses: a choice (a campaign) plus a number of days."""
    news = ContactListFactory(workspace=ws)
    hit = contact(ws, "hit", created_at=NOW - dt.timedelta(days=2))
    SubscriptionFactory(contact=hit, contact_list=news)
    condition = Condition(
        key="joined_list_recently",
        label="Joined list",
        group="Lists",
        operators=(Operator("joined", "joined … in the last … days", ValueKind.CHOICE_DAYS),),
        choices=lambda workspace: [
            (pk, name) for pk, name in workspace.contactlist_set.values_list("pk", "name")
        ],
        compile=lambda ctx, operator, value: Q(
            subscriptions__contact_list_id=value[0],
            subscriptions__created_at__gte=ctx.days_ago(value[1]),
        ),
    )
    segment_conditions.register(condition)
    try:
        assert matching(ws, rule("joined_list_recently", "joined", [str(news.pk), "7"])) == {"hit"}
    finally:
        segment_conditions.unregister(condition.key)


# Services ----------------------------------------------------------------------------------


def test_segment_create_update_delete_are_audited(ws):
    user = UserFactory()
    segment = services.segment_create(
        workspace=ws,
        name=" Recent ",
        definition={"rules": [rule("created_at", "in_last_days", "30")]},
        acting_user=user,
    )
    assert segment.name == "Recent"
    assert segment.definition["rules"][0]["value"] == 30
    services.segment_update(
        segment=segment,
        name="Recent",
        description="Last month",
        definition={"rules": [rule("created_at", "in_last_days", 31)]},
        acting_user=user,
    )
    services.segment_delete(segment=segment, acting_user=user)
    entries = AuditEntry.objects.filter(workspace=ws).order_by("id")
    assert [entry.verb for entry in entries] == [
        "segment.created",
        "segment.updated",
        "segment.deleted",
    ]
    assert entries[1].details == {"changed": ["description", "rules"]}
    assert not Segment.objects.filter(pk=segment.pk).exists()


def test_segment_create_refuses_bad_rules_and_duplicate_names(ws):
    with pytest.raises(SegmentDefinitionError):
        services.segment_create(
            workspace=ws, name="Bad", definition={"rules": [rule("x", "y")]}, acting_user=None
        )
    services.segment_create(workspace=ws, name="Everyone", definition={}, acting_user=None)
    with pytest.raises(ApplicationError, match="already exists"):
        services.segment_create(workspace=ws, name="Everyone", definition={}, acting_user=None)
    assert not AuditEntry.objects.filter(verb="segment.created", target_label="Bad").exists()


def test_relative_dates_use_the_time_of_the_query(ws):
    contact(ws, "fresh", created_at=timezone.now() - dt.timedelta(hours=1))
    assert (
        compiler.definition_contacts(
            workspace=ws, definition={"rules": [rule("created_at", "in_last_days", 1)]}
        ).count()
        == 1
    )
