"""The built-in segment conditions: contact columns, custom attributes, lists, engagement.

Custom attributes are compared by their Field's type inside SQL: the JSONB value is cast
(`numeric`, `date`, `boolean`) only when it has the right shape, so a value of the wrong
type in some contact's attributes makes that contact not match instead of failing the
query. Negative operators ("is not", "does not contain", "not subscribed") also match
contacts that have no value at all.
"""

import datetime as dt
from decimal import Decimal

from django.db.models import (
    BooleanField,
    DateField,
    DecimalField,
    Exists,
    Expression,
    F,
    OuterRef,
    Q,
    TextField,
    Value,
)
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IEndsWith,
    IExact,
    IsNull,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
)

from accounts.models import Workspace
from contacts.models import Contact, ContactList, Field, Subscription
from contacts.segments.registry import (
    CompileContext,
    Condition,
    Operator,
    ValueKind,
    segment_conditions,
)

K = ValueKind

# Text -------------------------------------------------------------------------------------

TEXT_OPERATORS = (
    Operator("equals", "is", K.TEXT),
    Operator("not_equals", "is not", K.TEXT),
    Operator("contains", "contains", K.TEXT),
    Operator("not_contains", "does not contain", K.TEXT),
    Operator("starts_with", "starts with", K.TEXT),
    Operator("ends_with", "ends with", K.TEXT),
    Operator("is_empty", "is empty", K.NONE),
    Operator("is_not_empty", "is not empty", K.NONE),
)

_TEXT_LOOKUPS = {
    "equals": IExact,
    "contains": IContains,
    "starts_with": IStartsWith,
    "ends_with": IEndsWith,
}


def _text_q(expression: Expression, operator: str, value) -> Q:
    """Case-insensitive text tests; `expression` is NULL when there is no value."""
    if operator in _TEXT_LOOKUPS:
        return Q(_TEXT_LOOKUPS[operator](expression, value))
    if operator == "not_equals":
        return Q(IsNull(expression, True)) | ~Q(IExact(expression, value))
    if operator == "not_contains":
        return Q(IsNull(expression, True)) | ~Q(IContains(expression, value))
    if operator == "is_empty":
        return Q(IsNull(expression, True)) | Q(Exact(expression, ""))
    if operator == "is_not_empty":
        return Q(IsNull(expression, False)) & ~Q(Exact(expression, ""))
    raise ValueError(operator)


def text_condition(key: str, label: str, *, operators=TEXT_OPERATORS) -> Condition:
    def compile_text(ctx: CompileContext, operator: str, value) -> Q:
        return _text_q(F(key), operator, value)

    return Condition(key=key, label=label, operators=operators, compile=compile_text)


# Typed custom attributes ------------------------------------------------------------------

_ISO_DATE = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"

# {t} is the attribute as text (attributes ->> key), {j} as JSONB (attributes -> key).
# CASE evaluates its branches in order, so a cast runs only on a value of the right shape.
_TYPED_SQL = {
    Field.Type.NUMBER: "CASE WHEN jsonb_typeof({j}) = 'number' THEN ({t})::numeric END",
    Field.Type.BOOLEAN: "CASE WHEN jsonb_typeof({j}) = 'boolean' THEN ({t})::boolean END",
    Field.Type.TEXT: "CASE WHEN jsonb_typeof({j}) = 'string' THEN {t} END",
    Field.Type.CHOICE: "CASE WHEN jsonb_typeof({j}) = 'string' THEN {t} END",
    # A 'YYYY-MM-DD' string whose day exists in its month (2023-02-30 would fail the cast).
    Field.Type.DATE: (
        "CASE WHEN jsonb_typeof({j}) = 'string' AND {t} ~ '" + _ISO_DATE + "' "
        "AND left({t}, 4) <> '0000' THEN CASE WHEN substr({t}, 9, 2)::int <= extract(day FROM "
        "make_date(left({t}, 4)::int, substr({t}, 6, 2)::int, 1) "
        "+ interval '1 month' - interval '1 day') THEN ({t})::date END END"
    ),
}

_TYPED_OUTPUT = {
    Field.Type.NUMBER: DecimalField,
    Field.Type.BOOLEAN: BooleanField,
    Field.Type.DATE: DateField,
    Field.Type.TEXT: TextField,
    Field.Type.CHOICE: TextField,
}


class AttributeValue(Expression):
    """One custom attribute as a typed SQL value; NULL when missing or of the wrong type."""

    def __init__(self, key: str, field_type: str):
        super().__init__(output_field=_TYPED_OUTPUT[field_type]())
        self.key, self.field_type = key, field_type
        self.as_text = KeyTextTransform(key, "attributes")
        self.as_json = KeyTransform(key, "attributes")

    def get_source_expressions(self):
        return [self.as_text, self.as_json]

    def set_source_expressions(self, expressions):
        self.as_text, self.as_json = expressions

    def as_sql(self, compiler, connection):
        text_sql, text_params = compiler.compile(self.as_text)
        json_sql, json_params = compiler.compile(self.as_json)
        template = _TYPED_SQL[self.field_type]
        sql, params, rest = [], [], template
        # Substitute {t} / {j} in order, keeping each copy's parameters in the same order.
        while rest:
            positions = [(rest.find(mark), mark) for mark in ("{t}", "{j}") if mark in rest]
            if not positions:
                sql.append(rest.replace("%", "%%"))
                break
            index, mark = min(positions)
            sql.append(rest[:index].replace("%", "%%"))
            sql.append(text_sql if mark == "{t}" else json_sql)
            params.extend(text_params if mark == "{t}" else json_params)
            rest = rest[index + 3 :]
        return "".join(sql), params


def _decimal(number) -> Value:
    return Value(Decimal(str(number)), output_field=DecimalField())


NUMBER_OPERATORS = (
    Operator("eq", "=", K.NUMBER),
    Operator("neq", "≠", K.NUMBER),
    Operator("gt", ">", K.NUMBER),
    Operator("gte", "≥", K.NUMBER),
    Operator("lt", "<", K.NUMBER),
    Operator("lte", "≤", K.NUMBER),
    Operator("between", "is between", K.NUMBER_RANGE),
    Operator("is_set", "has a value", K.NONE),
    Operator("is_not_set", "has no value", K.NONE),
)

DATE_OPERATORS = (
    Operator("on", "is on", K.DATE),
    Operator("before", "is before", K.DATE),
    Operator("after", "is after", K.DATE),
    Operator("between", "is between", K.DATE_RANGE),
    Operator("is_set", "has a value", K.NONE),
    Operator("is_not_set", "has no value", K.NONE),
)

BOOLEAN_OPERATORS = (
    Operator("is_true", "is yes", K.NONE),
    Operator("is_false", "is no", K.NONE),
    Operator("is_not_set", "has no value", K.NONE),
)

CHOICE_OPERATORS = (
    Operator("is", "is", K.CHOICE),
    Operator("is_not", "is not", K.CHOICE),
    Operator("is_set", "has a value", K.NONE),
    Operator("is_not_set", "has no value", K.NONE),
)

_COMPARE = {
    "eq": Exact,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
    "lt": LessThan,
    "lte": LessThanOrEqual,
    "on": Exact,
    "before": LessThan,
    "after": GreaterThan,
}


def _typed_q(typed: AttributeValue, operator: str, value) -> Q:
    """Number and date comparisons on a typed attribute value."""
    wrap = _decimal if typed.field_type == Field.Type.NUMBER else _date_value
    if operator in _COMPARE:
        return Q(_COMPARE[operator](typed, wrap(value)))
    if operator == "neq":
        return Q(IsNull(typed, True)) | ~Q(Exact(typed, wrap(value)))
    if operator == "between":
        low, high = value
        return Q(GreaterThanOrEqual(typed, wrap(low))) & Q(LessThanOrEqual(typed, wrap(high)))
    if operator == "is_set":
        return Q(IsNull(typed, False))
    if operator == "is_not_set":
        return Q(IsNull(typed, True))
    raise ValueError(operator)


def _date_value(day: dt.date) -> Value:
    return Value(day, output_field=DateField())


def attribute_condition(custom_field: Field) -> Condition:
    """The condition of one custom field, typed by the field."""
    key, field_type = custom_field.key, custom_field.type
    choices = None
    if field_type == Field.Type.NUMBER:
        operators = NUMBER_OPERATORS
    elif field_type == Field.Type.DATE:
        operators = DATE_OPERATORS
    elif field_type == Field.Type.BOOLEAN:
        operators = BOOLEAN_OPERATORS
    elif field_type == Field.Type.CHOICE and custom_field.choices:
        operators = CHOICE_OPERATORS
        field_choices = [(str(choice), str(choice)) for choice in custom_field.choices]
        choices = lambda workspace: field_choices  # noqa: E731
    else:
        operators = TEXT_OPERATORS

    def compile_attribute(ctx: CompileContext, operator: str, value) -> Q:
        typed = AttributeValue(key, field_type)
        if field_type in (Field.Type.NUMBER, Field.Type.DATE):
            return _typed_q(typed, operator, value)
        if field_type == Field.Type.BOOLEAN:
            if operator == "is_true":
                return Q(Exact(typed, True))
            if operator == "is_false":
                return Q(Exact(typed, False))
            return Q(IsNull(typed, True))
        if operators is CHOICE_OPERATORS:
            if operator == "is":
                return Q(Exact(typed, value))
            if operator == "is_not":
                return Q(IsNull(typed, True)) | ~Q(Exact(typed, value))
            return Q(IsNull(typed, operator == "is_not_set"))
        return _text_q(typed, operator, value)

    return Condition(
        key=f"attr:{key}",
        label=custom_field.label,
        group="Custom fields",
        operators=operators,
        compile=compile_attribute,
        choices=choices,
    )


def attribute_conditions(workspace: Workspace) -> list[Condition]:
    return [attribute_condition(field) for field in Field.objects.for_workspace(workspace)]


# Contact status and dates -----------------------------------------------------------------


def _compile_status(ctx: CompileContext, operator: str, value) -> Q:
    return Q(status=value) if operator == "is" else ~Q(status=value)


DATE_TIME_OPERATORS = (
    Operator("in_last_days", "in the last", K.DAYS),
    Operator("not_in_last_days", "not in the last", K.DAYS),
    Operator("on", "on", K.DATE),
    Operator("before", "before", K.DATE),
    Operator("after", "after", K.DATE),
    Operator("between", "between", K.DATE_RANGE),
)


def _compile_created(ctx: CompileContext, operator: str, value) -> Q:
    """Calendar days are those of the workspace's time zone."""
    next_day = dt.timedelta(days=1)
    if operator == "in_last_days":
        return Q(created_at__gte=ctx.days_ago(value))
    if operator == "not_in_last_days":
        return Q(created_at__lt=ctx.days_ago(value))
    if operator == "on":
        return Q(
            created_at__gte=ctx.start_of_day(value),
            created_at__lt=ctx.start_of_day(value + next_day),
        )
    if operator == "before":
        return Q(created_at__lt=ctx.start_of_day(value))
    if operator == "after":
        return Q(created_at__gte=ctx.start_of_day(value + next_day))
    if operator == "between":
        start, end = value
        return Q(
            created_at__gte=ctx.start_of_day(start),
            created_at__lt=ctx.start_of_day(end + next_day),
        )
    raise ValueError(operator)


ENGAGEMENT_OPERATORS = (
    Operator("in_last_days", "in the last", K.DAYS),
    Operator("not_in_last_days", "not in the last (or never)", K.DAYS),
    Operator("ever", "at least once", K.NONE),
    Operator("never", "never", K.NONE),
)


def engagement_condition(key: str, label: str) -> Condition:
    """A `last_*_at` fact copied onto Contact by the sending and tracking apps."""

    def compile_engagement(ctx: CompileContext, operator: str, value) -> Q:
        if operator == "in_last_days":
            return Q(**{f"{key}__gte": ctx.days_ago(value)})
        if operator == "not_in_last_days":
            return Q(**{f"{key}__isnull": True}) | Q(**{f"{key}__lt": ctx.days_ago(value)})
        return Q(**{f"{key}__isnull": operator == "never"})

    return Condition(
        key=key,
        label=label,
        group="Engagement",
        operators=ENGAGEMENT_OPERATORS,
        compile=compile_engagement,
    )


# Lists ------------------------------------------------------------------------------------

LIST_OPERATORS = (
    Operator("subscribed", "is subscribed to", K.CHOICE),
    Operator("not_subscribed", "is not subscribed to", K.CHOICE),
    Operator("pending", "is pending confirmation in", K.CHOICE),
    Operator("unsubscribed", "has unsubscribed from", K.CHOICE),
    Operator("any", "is in (any status)", K.CHOICE),
    Operator("not_in", "is not in", K.CHOICE),
)

_LIST_STATUS = {
    "subscribed": Subscription.Status.SUBSCRIBED,
    "not_subscribed": Subscription.Status.SUBSCRIBED,
    "pending": Subscription.Status.PENDING,
    "unsubscribed": Subscription.Status.UNSUBSCRIBED,
}


def _list_choices(workspace: Workspace) -> list[tuple[int, str]]:
    return list(ContactList.objects.for_workspace(workspace).values_list("pk", "name"))


def _compile_list(ctx: CompileContext, operator: str, value) -> Q:
    subscriptions = Subscription.objects.filter(
        workspace=ctx.workspace, contact=OuterRef("pk"), contact_list_id=value
    )
    if operator in _LIST_STATUS:
        subscriptions = subscriptions.filter(status=_LIST_STATUS[operator])
    member = Exists(subscriptions)
    return ~Q(member) if operator in ("not_subscribed", "not_in") else Q(member)


# Registration -----------------------------------------------------------------------------

BUILT_IN = (
    text_condition(
        "email",
        "Email address",
        operators=tuple(op for op in TEXT_OPERATORS if op.key not in ("is_empty", "is_not_empty")),
    ),
    text_condition("first_name", "First name"),
    text_condition("last_name", "Last name"),
    Condition(
        key="status",
        label="Contact status",
        operators=(Operator("is", "is", K.CHOICE), Operator("is_not", "is not", K.CHOICE)),
        choices=lambda workspace: Contact.Status.choices,
        compile=_compile_status,
    ),
    Condition(
        key="created_at",
        label="Date added",
        operators=DATE_TIME_OPERATORS,
        compile=_compile_created,
    ),
    Condition(
        key="list",
        label="List membership",
        group="Lists",
        operators=LIST_OPERATORS,
        choices=_list_choices,
        compile=_compile_list,
    ),
    engagement_condition("last_sent_at", "Was sent a campaign"),
    engagement_condition("last_opened_at", "Opened a campaign"),
    engagement_condition("last_clicked_at", "Clicked a link"),
)


def register_built_in() -> None:
    for condition in BUILT_IN:
        segment_conditions.register(condition, replace=True)
    segment_conditions.register_provider(attribute_conditions)
