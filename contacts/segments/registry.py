"""The segment condition registry: what a rule may test, and how it becomes SQL.

A segment definition is a tree of groups and rules (stored in Segment.definition):

    {"op": "and", "rules": [
        {"field": "attr:age", "operator": "gt", "value": 9},
        {"op": "or", "rules": [
            {"field": "list", "operator": "subscribed", "value": 12},
            {"field": "created_at", "operator": "in_last_days", "value": 90},
        ]},
    ]}

A rule's "field" names a `Condition`. A condition says which operators it allows, what
kind of value each operator takes (checked by the compiler before any SQL is built, see
`ValueKind`) and how (operator, cleaned value) becomes a `Q` over `Contact`. The compiler
joins the rules' `Q`s with AND/OR, so a whole segment is one SQL query; a condition must
therefore express itself in SQL (columns, JSONB expressions, `Exists` subqueries), never by
filtering rows in Python.

Higher apps register their own conditions in `AppConfig.ready()`; contacts never imports
them (the layers rule). For example, the tracking app:

    from django.db.models import Exists, OuterRef, Q
    from contacts.segments.registry import Condition, Operator, ValueKind, segment_conditions

    def _opened(ctx, operator, value):
        campaign_id, days = value
        opened = Exists(Event.objects.filter(
            workspace=ctx.workspace, contact=OuterRef("pk"), campaign_id=campaign_id,
            kind="open", created_at__gte=ctx.days_ago(days)))
        return Q(opened) if operator == "opened" else ~Q(opened)

    segment_conditions.register(Condition(
        key="opened_campaign",
        label="Opened campaign",
        group="Engagement",
        operators=(
            Operator("opened", "opened … in the last … days", ValueKind.CHOICE_DAYS),
            Operator("not_opened", "did not open … in the last … days", ValueKind.CHOICE_DAYS),
        ),
        choices=lambda workspace: [(c.pk, c.name) for c in campaign_list(workspace=workspace)],
        compile=_opened,
    ))

Conditions whose keys depend on the workspace (one per custom field: "attr:<key>") come
from a provider registered with `register_provider`; a provider is called with the
workspace and returns its conditions.
"""

import datetime as dt
import enum
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounts.models import Workspace


class ValueKind(enum.StrEnum):
    """What an operator's value is; the compiler validates and normalises it.

    Cleaned values handed to `Condition.compile`:
    NONE → None; TEXT → non-empty str; NUMBER → int | float; NUMBER_RANGE → [low, high];
    DATE → datetime.date; DATE_RANGE → [start, end] (dates, start <= end); DAYS → int >= 1;
    CHOICE → one of the condition's choice values (as the choices give it);
    CHOICE_DAYS → [choice value, days].
    In a stored definition dates are ISO strings ('YYYY-MM-DD'); input such as '31/12/2023'
    is accepted and normalised.
    """

    NONE = "none"
    TEXT = "text"
    NUMBER = "number"
    NUMBER_RANGE = "number_range"
    DATE = "date"
    DATE_RANGE = "date_range"
    DAYS = "days"
    CHOICE = "choice"
    CHOICE_DAYS = "choice_days"


@dataclass(frozen=True)
class Operator:
    key: str
    label: str
    value: ValueKind = ValueKind.NONE


@dataclass
class CompileContext:
    """What a condition may know while compiling: the workspace and one fixed 'now'."""

    workspace: Workspace
    now: dt.datetime = field(default_factory=timezone.now)

    @property
    def tz(self) -> dt.tzinfo:
        try:
            return zoneinfo.ZoneInfo(self.workspace.time_zone or "UTC")
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return dt.UTC

    def days_ago(self, days: int) -> dt.datetime:
        return self.now - dt.timedelta(days=days)

    def start_of_day(self, day: dt.date) -> dt.datetime:
        """Midnight of `day` in the workspace's time zone, where its calendar days begin."""
        return dt.datetime.combine(day, dt.time.min, tzinfo=self.tz)


CompileFn = Callable[[CompileContext, str, Any], Q]
ChoicesFn = Callable[[Workspace], Sequence[tuple[Any, str]]]
CleanFn = Callable[[CompileContext, str, Any], Any]


@dataclass(frozen=True)
class Condition:
    """One thing a rule can test.

    key        the rule's "field"; unique in the registry ("email", "list", "attr:age")
    label      shown in the rule builder's field menu
    operators  the operators it allows, in menu order
    compile    compile(ctx, operator_key, cleaned_value) -> Q over Contact; must be SQL only,
               and must scope any subquery to ctx.workspace
    group      heading of the field menu it appears under
    choices    choices(workspace) -> [(value, label)], for CHOICE / CHOICE_DAYS operators;
               a value outside them is refused (this is what keeps another workspace's
               list or campaign out of a definition)
    clean      optional clean(ctx, operator_key, value) -> value, run after the generic
               check of the value kind; raise ValueError with a message to refuse it
    """

    key: str
    label: str
    operators: Sequence[Operator]
    compile: CompileFn
    group: str = "Contact"
    choices: ChoicesFn | None = None
    clean: CleanFn | None = None

    def operator(self, key: str) -> Operator | None:
        return next((operator for operator in self.operators if operator.key == key), None)


ConditionProvider = Callable[[Workspace], Iterable[Condition]]


class ConditionRegistry:
    """The conditions segments can use: registered ones plus those of providers."""

    def __init__(self) -> None:
        self._conditions: dict[str, Condition] = {}
        self._providers: list[ConditionProvider] = []

    def register(self, condition: Condition, *, replace: bool = False) -> Condition:
        if condition.key in self._conditions and not replace:
            raise ValueError(f"A segment condition {condition.key!r} is already registered.")
        if not condition.operators:
            raise ValueError(f"Segment condition {condition.key!r} has no operators.")
        self._conditions[condition.key] = condition
        return condition

    def unregister(self, key: str) -> None:
        self._conditions.pop(key, None)

    def register_provider(self, provider: ConditionProvider) -> ConditionProvider:
        """Add a source of per-workspace conditions (may query; called once per compile)."""
        if provider not in self._providers:
            self._providers.append(provider)
        return provider

    def unregister_provider(self, provider: ConditionProvider) -> None:
        if provider in self._providers:
            self._providers.remove(provider)

    def get(self, key: str) -> Condition | None:
        """A registered condition (not a provided one); see for_workspace()."""
        return self._conditions.get(key)

    def for_workspace(self, workspace: Workspace) -> dict[str, Condition]:
        """Every condition a segment of `workspace` may use, by key, in menu order."""
        conditions = dict(self._conditions)
        for provider in self._providers:
            for condition in provider(workspace):
                conditions.setdefault(condition.key, condition)
        return conditions


segment_conditions = ConditionRegistry()
