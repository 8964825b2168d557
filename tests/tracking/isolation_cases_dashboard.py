"""Isolation case of the dashboard's deliverability panel (see tests/accounts/test_isolation.py)."""

from accounts.models import Role

CASES = {
    "tracking:dashboard_panel": (lambda ws: {}, "get", None, True, Role.VIEWER),
}
