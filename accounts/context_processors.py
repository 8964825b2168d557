from django.http import HttpRequest

from accounts import selectors


def shell(request: HttpRequest) -> dict:
    """What the app shell needs on every page: the workspace and the switcher's entries."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    workspace = getattr(request, "workspace", None)
    return {
        "current_workspace": workspace,
        "current_membership": getattr(request, "membership", None),
        "user_memberships": selectors.user_memberships(user=user),
    }
