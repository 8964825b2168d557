"""Segment definitions: validated, then compiled into one query over the workspace's contacts.

A definition is a tree (see contacts/segments/registry.py): groups {"op": "and" | "or",
"rules": [...]} nested to any depth up to MAX_DEPTH, and rules {"field", "operator",
"value"}. Every rule becomes a `Q` through its registered condition and the groups join
them, so counting or listing a segment is a single SQL statement. An empty group is
ignored; an empty definition matches every contact of the workspace.

Selectors here are the audience of campaigns and exports: `segment_contacts(segment=...)`
returns a lazy QuerySet[Contact] that can be counted, sliced, streamed or used as a
subquery (`contact__in=segment_contacts(segment=s).values("pk")`).
"""

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from accounts.errors import ApplicationError
from accounts.models import Workspace
from contacts.attributes import InvalidValue, parse_date, parse_number
from contacts.models import Contact, Segment
from contacts.segments.registry import (
    CompileContext,
    Condition,
    ValueKind,
    segment_conditions,
)

MAX_DEPTH = 10
MAX_RULES = 200
MAX_DAYS = 36_500
MAX_TEXT = 500


@dataclass(frozen=True)
class Problem:
    """What is wrong with one node; `path` is the node's position, e.g. "0.2" (root: "")."""

    path: str
    message: str


class SegmentDefinitionError(ApplicationError):
    def __init__(self, problems: list[Problem]):
        super().__init__(
            "; ".join(
                f"{'rule ' + problem.path + ': ' if problem.path else ''}{problem.message}"
                for problem in problems
            ),
            extra={"problems": problems},
        )
        self.problems = problems


def is_group(node: Any) -> bool:
    return isinstance(node, dict) and "rules" in node


def child_path(path: str, index: int) -> str:
    return f"{path}.{index}" if path else str(index)


class _Checker:
    """Walks a definition once: collects problems, builds the normalised copy and the Q."""

    def __init__(self, ctx: CompileContext, conditions: dict[str, Condition]):
        self.ctx, self.conditions = ctx, conditions
        self.problems: list[Problem] = []
        self.rule_count = 0
        self._choices: dict[str, dict[str, Any]] = {}

    def group(self, node: Any, path: str, depth: int) -> tuple[dict, Q]:
        if not is_group(node) or not isinstance(node["rules"], list):
            self.problems.append(Problem(path, "A group needs a list of rules."))
            return {"op": "and", "rules": []}, Q()
        op = node.get("op", "and")
        if op not in ("and", "or"):
            self.problems.append(Problem(path, f"A group joins its rules with and/or, not {op!r}."))
            op = "and"
        if depth > MAX_DEPTH:
            self.problems.append(Problem(path, f"Groups can be nested {MAX_DEPTH} deep at most."))
            return {"op": op, "rules": []}, Q()
        rules, q = [], Q()
        for index, child in enumerate(node["rules"]):
            at = child_path(path, index)
            if is_group(child):
                cleaned, child_q = self.group(child, at, depth + 1)
            else:
                cleaned, child_q = self.rule(child, at)
            rules.append(cleaned)
            q = (q & child_q) if op == "and" else (q | child_q)
        return {"op": op, "rules": rules}, q

    def rule(self, node: Any, path: str) -> tuple[dict, Q]:
        self.rule_count += 1
        if self.rule_count == MAX_RULES + 1:
            self.problems.append(Problem(path, f"A segment has at most {MAX_RULES} rules."))
        if not isinstance(node, dict):
            self.problems.append(Problem(path, "A rule must be an object."))
            return {}, Q()
        key, operator_key = node.get("field"), node.get("operator")
        condition = self.conditions.get(key) if isinstance(key, str) else None
        if condition is None:
            self.problems.append(Problem(path, f"Unknown field {key!r}."))
            return dict(node), Q()
        operator = condition.operator(operator_key) if isinstance(operator_key, str) else None
        if operator is None:
            allowed = ", ".join(op.key for op in condition.operators)
            self.problems.append(
                Problem(
                    path,
                    f"{condition.label}: unknown operator {operator_key!r} (allowed: {allowed}).",
                )
            )
            return dict(node), Q()
        try:
            value = self.value(condition, operator.value, node.get("value"))
            if condition.clean is not None:
                value = condition.clean(self.ctx, operator.key, value)
        except (ValueError, TypeError, InvalidValue) as error:
            self.problems.append(Problem(path, f"{condition.label} {operator.label}: {error}"))
            return dict(node), Q()
        cleaned = {"field": key, "operator": operator.key}
        if operator.value != ValueKind.NONE:
            cleaned["value"] = _to_json(value)
        return cleaned, condition.compile(self.ctx, operator.key, value)

    def value(self, condition: Condition, kind: ValueKind, raw: Any) -> Any:
        if kind == ValueKind.NONE:
            return None
        if kind in (ValueKind.NUMBER_RANGE, ValueKind.DATE_RANGE, ValueKind.CHOICE_DAYS):
            if not isinstance(raw, list | tuple) or len(raw) != 2:
                raise ValueError("needs two values.")
            if kind == ValueKind.CHOICE_DAYS:
                return [self.choice(condition, raw[0]), _days(raw[1])]
            one = _number if kind == ValueKind.NUMBER_RANGE else _date
            low, high = one(raw[0]), one(raw[1])
            if low > high:
                raise ValueError("the first value must not be greater than the second.")
            return [low, high]
        if kind == ValueKind.TEXT:
            text = "" if raw is None else str(raw).strip()
            if not text:
                raise ValueError("enter a value.")
            if len(text) > MAX_TEXT:
                raise ValueError(f"at most {MAX_TEXT} characters.")
            return text
        if kind == ValueKind.NUMBER:
            return _number(raw)
        if kind == ValueKind.DATE:
            return _date(raw)
        if kind == ValueKind.DAYS:
            return _days(raw)
        if kind == ValueKind.CHOICE:
            return self.choice(condition, raw)
        raise ValueError(f"unsupported value kind {kind}")

    def choice(self, condition: Condition, raw: Any) -> Any:
        if condition.key not in self._choices:
            options = condition.choices(self.ctx.workspace) if condition.choices else []
            self._choices[condition.key] = {str(value): value for value, _ in options}
        options = self._choices[condition.key]
        if raw is None or str(raw) not in options:
            raise ValueError(
                "choose one of the options." if raw in (None, "") else "no such option."
            )
        return options[str(raw)]


def _number(raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise ValueError("enter a number.")
    if isinstance(raw, int | float):
        return parse_number(repr(raw))
    if raw is None or not str(raw).strip():
        raise ValueError("enter a number.")
    return parse_number(str(raw))


def _date(raw: Any) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if raw is None or not str(raw).strip():
        raise ValueError("enter a date.")
    return dt.date.fromisoformat(parse_date(str(raw)))


def _days(raw: Any) -> int:
    try:
        days = int(str(raw).strip())
    except (TypeError, ValueError):
        raise ValueError("enter a number of days.") from None
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"the number of days must be between 1 and {MAX_DAYS}.")
    return days


def _to_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _check(
    *, workspace: Workspace, definition: Any, now: dt.datetime | None
) -> tuple[dict, Q, list[Problem]]:
    ctx = CompileContext(workspace=workspace) if now is None else CompileContext(workspace, now)
    checker = _Checker(ctx, segment_conditions.for_workspace(workspace))
    if definition in (None, {}):
        definition = {"op": "and", "rules": []}
    cleaned, q = checker.group(definition, "", depth=1)
    return cleaned, q, checker.problems


def definition_clean(*, workspace: Workspace, definition: Any) -> dict:
    """The definition with every value checked and normalised; raises with every problem."""
    cleaned, _, problems = _check(workspace=workspace, definition=definition, now=None)
    if problems:
        raise SegmentDefinitionError(problems)
    return cleaned


def definition_compile(
    *, workspace: Workspace, definition: Any, now: dt.datetime | None = None
) -> Q:
    """The definition as one Q over Contact (not yet scoped to the workspace)."""
    _, q, problems = _check(workspace=workspace, definition=definition, now=now)
    if problems:
        raise SegmentDefinitionError(problems)
    return q


def definition_contacts(
    *, workspace: Workspace, definition: Any, now: dt.datetime | None = None
) -> QuerySet[Contact]:
    """The workspace's contacts that match the definition, as one lazy query."""
    q = definition_compile(workspace=workspace, definition=definition, now=now)
    return Contact.objects.for_workspace(workspace).filter(q)


def segment_contacts(*, segment: Segment, now: dt.datetime | None = None) -> QuerySet[Contact]:
    """The contacts of a saved segment: an audience for campaigns and exports."""
    return definition_contacts(workspace=segment.workspace, definition=segment.definition, now=now)
