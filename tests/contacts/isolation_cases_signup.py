"""Isolation cases of the signup form pages (see tests/accounts/test_isolation.py)."""

from accounts.models import Role
from tests.contacts.signup_factories import SignupFormFactory


def _form(ws) -> dict:
    return {"form_id": SignupFormFactory(workspace=ws).pk}


CASES = {
    "contacts:form_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "contacts:form_new": (lambda ws: {}, "get", None, False, Role.EDITOR),
    "contacts:form_detail": (_form, "get", None, False, Role.VIEWER),
    "contacts:form_edit": (_form, "get", None, False, Role.EDITOR),
    "contacts:form_delete": (_form, "post", None, True, Role.EDITOR),
}
