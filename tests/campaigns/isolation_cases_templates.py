"""Isolation cases of the template library (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from campaigns import library

_LAYOUT = '<html><body>{{ content }}<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>'


def _template(ws) -> dict:
    template = library.template_create(
        workspace=ws, name="Isolation", html=_LAYOUT, acting_user=None
    )
    return {"template_id": template.pk}


def _old_version(ws) -> dict:
    template = library.template_create(
        workspace=ws, name="Isolation", html=_LAYOUT, acting_user=None
    )
    library.template_update(
        template=template, name="Isolation", html=f"<!-- v2 -->{_LAYOUT}", acting_user=None
    )
    return {"template_id": template.pk, "number": 1}


CASES = {
    "campaigns:template_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "campaigns:template_create": (lambda ws: {}, "get", None, False, Role.EDITOR),
    "campaigns:template_edit": (_template, "get", None, False, Role.VIEWER),
    "campaigns:template_duplicate": (_template, "post", None, False, Role.EDITOR),
    "campaigns:template_version_restore": (_old_version, "post", None, False, Role.EDITOR),
}
