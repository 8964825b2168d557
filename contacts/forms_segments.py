"""The segment rule builder's form state: a tree of groups and rules posted as flat fields.

Each node of the tree has a path: "r" is the root group, "r-0" its first child, "r-0-2" the
third child of that, and so on. Its fields are named `<path>__<name>`: `kind` (group |
rule), `op` (and | or) for a group, `field`, `operator`, `value`, `value2` for a rule.
Posting the whole form re-creates the tree, so the builder is re-rendered by the server
(add condition, add group, remove) with no JavaScript of its own.
"""

import dataclasses
import re
from typing import Any

from django import forms
from django.http import QueryDict

from accounts.models import Workspace
from contacts.models import Segment
from contacts.segments.compiler import Problem, child_path, is_group
from contacts.segments.registry import Condition, Operator, ValueKind

ROOT = "r"
_PATH = re.compile(r"^r(-\d{1,3}){0,12}$")
_RANGE_KINDS = (ValueKind.NUMBER_RANGE, ValueKind.DATE_RANGE, ValueKind.CHOICE_DAYS)
_CHOICE_KINDS = (ValueKind.CHOICE, ValueKind.CHOICE_DAYS)


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "description"]
        widgets = {"description": forms.TextInput()}
        help_texts = {"description": "Optional: what this audience is for."}


@dataclasses.dataclass
class Node:
    kind: str  # "group" | "rule"
    op: str = "and"
    children: list["Node"] = dataclasses.field(default_factory=list)
    field: str = ""
    operator: str = ""
    value: str = ""
    value2: str = ""
    # Filled by `annotate` for rendering.
    path: str = ROOT
    depth: int = 0
    error: str = ""
    condition: Condition | None = None
    operator_info: Operator | None = None
    choices: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def value_kind(self) -> str:
        return self.operator_info.value if self.operator_info else ValueKind.NONE

    @property
    def summary(self) -> str:
        """The rule as a phrase, e.g. "Date added in the last 90 days", for read-only pages."""
        if self.condition is None or self.operator_info is None:
            return f"{self.field or 'Condition'} (no longer available)"
        labels = dict(self.choices)
        values = [labels.get(self.value, self.value)]
        kind = self.value_kind
        if kind in _RANGE_KINDS:
            values.append(self.value2)
        label = self.operator_info.label
        if kind == ValueKind.NONE:
            phrase = label
        elif kind == ValueKind.DAYS:
            phrase = f"{label} {self.value} days"
        elif "…" in label:
            phrase = label
            for value in values:
                phrase = phrase.replace("…", value, 1)
        else:
            phrase = f"{label} {' and '.join(values)}"
        return f"{self.condition.label} {phrase}"


def empty_rule() -> Node:
    return Node(kind="rule")


def empty_tree() -> Node:
    return Node(kind="group", children=[empty_rule()])


def tree_from_post(data: QueryDict) -> Node:
    """The builder tree the browser posted; unknown or orphaned paths are dropped."""
    nodes: dict[str, Node] = {}
    for name in data:
        path, _, suffix = name.partition("__")
        if suffix != "kind" or not _PATH.match(path):
            continue
        kind = "group" if data.get(name) == "group" or path == ROOT else "rule"
        nodes[path] = Node(
            kind=kind,
            op="or" if data.get(f"{path}__op") == "or" else "and",
            field=data.get(f"{path}__field", "")[:100],
            operator=data.get(f"{path}__operator", "")[:50],
            value=data.get(f"{path}__value", "")[:500],
            value2=data.get(f"{path}__value2", "")[:500],
        )
    root = nodes.get(ROOT) or Node(kind="group")

    def attach(path: str, node: Node) -> None:
        prefix = f"{path}-"
        child_paths = [
            child for child in nodes if child.startswith(prefix) and "-" not in child[len(prefix) :]
        ]
        for child in sorted(child_paths, key=lambda child: int(child[len(prefix) :])):
            if node.is_group:
                node.children.append(nodes[child])
                attach(child, nodes[child])

    attach(ROOT, root)
    return root


def tree_apply(tree: Node, action: str) -> Node:
    """Apply a builder button: add-rule:<path>, add-group:<path> or remove:<path>."""
    verb, _, path = action.partition(":")
    parent_path, _, index = path.rpartition("-")
    if verb in ("add-rule", "add-group"):
        group = _find(tree, path)
        if group is not None and group.is_group:
            if verb == "add-rule":
                group.children.append(empty_rule())
            else:
                op = "or" if group.op == "and" else "and"
                group.children.append(Node(kind="group", op=op, children=[empty_rule()]))
    elif verb == "remove" and parent_path:
        parent = _find(tree, parent_path)
        if parent is not None and index.isdigit() and int(index) < len(parent.children):
            del parent.children[int(index)]
    return tree


def _find(tree: Node, path: str) -> Node | None:
    if not _PATH.match(path):
        return None
    node = tree
    for part in path.split("-")[1:]:
        index = int(part)
        if not node.is_group or index >= len(node.children):
            return None
        node = node.children[index]
    return node


def tree_to_definition(
    tree: Node, *, conditions: dict[str, Condition]
) -> tuple[dict, dict[str, str]]:
    """The definition the tree stands for, and definition path → builder path.

    Rules with no field chosen yet are left out, so an unfinished row does not block the
    count; values stay text for the compiler to check.
    """
    paths: dict[str, str] = {}

    def rule_value(rule: Node) -> tuple[bool, Any]:
        condition = conditions.get(rule.field)
        operator = condition.operator(rule.operator) if condition else None
        if operator is None:
            return bool(rule.value), rule.value
        if operator.value == ValueKind.NONE:
            return False, None
        if operator.value in _RANGE_KINDS:
            return True, [rule.value, rule.value2]
        return True, rule.value

    def convert(node: Node, node_path: str, definition_path: str) -> dict:
        rules = []
        for index, child in enumerate(node.children):
            builder_path = f"{node_path}-{index}"
            at = child_path(definition_path, len(rules))
            if child.is_group:
                rules.append(convert(child, builder_path, at))
            elif child.field:
                rule: dict[str, Any] = {"field": child.field, "operator": child.operator}
                has_value, value = rule_value(child)
                if has_value:
                    rule["value"] = value
                rules.append(rule)
            else:
                continue
            paths[at] = builder_path
        return {"op": node.op, "rules": rules}

    paths[""] = ROOT
    return convert(tree, ROOT, ""), paths


def tree_from_definition(definition: dict | None) -> Node:
    def convert(node: dict) -> Node:
        group = Node(kind="group", op="or" if node.get("op") == "or" else "and")
        for child in node.get("rules", []):
            if is_group(child):
                group.children.append(convert(child))
                continue
            value, value2 = child.get("value"), None
            if isinstance(value, list):
                value, value2 = ([*value, None, None])[:2]
            group.children.append(
                Node(
                    kind="rule",
                    field=str(child.get("field", "")),
                    operator=str(child.get("operator", "")),
                    value="" if value is None else str(value),
                    value2="" if value2 is None else str(value2),
                )
            )
        return group

    if not is_group(definition):
        return empty_tree()
    return convert(definition)


def tree_annotate(
    tree: Node,
    *,
    workspace: Workspace,
    conditions: dict[str, Condition],
    problems: list[Problem] | None = None,
    paths: dict[str, str] | None = None,
) -> Node:
    """Give every node its path, condition, operators and choices, and its error if any."""
    choices_cache: dict[str, list[tuple[str, str]]] = {}
    errors = {}
    for problem in problems or []:
        builder_path = (paths or {}).get(problem.path)
        if builder_path:
            errors.setdefault(builder_path, problem.message)

    def walk(node: Node, path: str, depth: int) -> None:
        node.path, node.depth, node.error = path, depth, errors.get(path, "")
        if node.is_group:
            for index, child in enumerate(node.children):
                walk(child, f"{path}-{index}", depth + 1)
            return
        node.condition = conditions.get(node.field)
        if node.condition is None:
            if node.field:
                node.error = node.error or f"Unknown field {node.field!r}."
            node.operator_info = None
            return
        node.operator_info = node.condition.operator(node.operator)
        if node.operator_info is None:
            node.operator_info = node.condition.operators[0]
            node.operator = node.operator_info.key
        if node.condition.choices is not None:
            if node.condition.key not in choices_cache:
                choices_cache[node.condition.key] = [
                    (str(value), str(label)) for value, label in node.condition.choices(workspace)
                ]
            node.choices = choices_cache[node.condition.key]
            if node.choices and not node.value and node.value_kind in _CHOICE_KINDS:
                node.value = node.choices[0][0]

    walk(tree, ROOT, 0)
    return tree


def field_menu(conditions: dict[str, Condition]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The builder's field menu: [(group heading, [(key, label)])] in registry order."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key, condition in conditions.items():
        groups.setdefault(condition.group, []).append((key, condition.label))
    return list(groups.items())
