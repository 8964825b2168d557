"""Isolation cases of the segment pages (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from contacts.models import Segment

_RULES = {"r__kind": "group", "r__op": "and", "r-0__kind": "rule", "r-0__field": "email"}


def _segment(workspace) -> dict:
    segment = Segment.objects.create(
        workspace=workspace,
        name="Recent",
        definition={
            "op": "and",
            "rules": [{"field": "created_at", "operator": "in_last_days", "value": 30}],
        },
    )
    return {"segment_id": segment.pk}


CASES = {
    "contacts:segment_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "contacts:segment_new": (lambda ws: {}, "get", None, False, Role.EDITOR),
    "contacts:segment_builder": (
        lambda ws: {},
        "post",
        {**_RULES, "action": "add-rule:r"},
        True,
        Role.EDITOR,
    ),
    "contacts:segment_preview": (lambda ws: {}, "post", _RULES, True, Role.EDITOR),
    "contacts:segment_detail": (_segment, "get", None, False, Role.VIEWER),
    "contacts:segment_edit": (_segment, "get", None, False, Role.EDITOR),
    "contacts:segment_count": (_segment, "get", None, True, Role.VIEWER),
    "contacts:segment_delete": (_segment, "post", None, False, Role.EDITOR),
}
