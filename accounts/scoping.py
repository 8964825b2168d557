"""Workspace scoping, expressed once: every /w/<workspace_slug>/… view goes through here."""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils import timezone

from accounts import selectors
from accounts.models import ROLE_RANK, Membership, Role, Workspace

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WorkspaceRequest(HttpRequest):
    workspace: Workspace
    membership: Membership


def _stricter(first: str, second: str) -> str:
    return first if ROLE_RANK[Role(first)] >= ROLE_RANK[Role(second)] else second


def workspace_view(
    min_role: str = Role.VIEWER, *, write_role: str = Role.EDITOR
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Resolve the workspace from the URL, check membership and role, set request.workspace.

    A non-member gets 404 (the workspace's existence is not revealed). A member whose
    role is too low gets 403. Methods that change data need at least `write_role`.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, workspace_slug: str, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    # A fragment request whose session expired: reload the page to sign in,
                    # rather than swapping the sign-in page into a panel.
                    response = HttpResponse(status=204)
                    response["HX-Redirect"] = resolve_url(settings.LOGIN_URL)
                    return response
                return redirect_to_login(request.get_full_path())
            membership = selectors.membership_for_slug(
                user=request.user, workspace_slug=workspace_slug
            )
            needed = min_role if request.method in SAFE_METHODS else _stricter(min_role, write_role)
            if not membership.has_role(needed):
                raise PermissionDenied("Your role in this workspace does not allow this.")
            request.workspace = membership.workspace
            request.membership = membership
            _remember_last_used(membership)
            return view(request, *args, **kwargs)

        wrapped.workspace_min_role = min_role
        return wrapped

    return decorator


def _remember_last_used(membership: Membership) -> None:
    now = timezone.now()
    # At most one write a minute per member, not one per request.
    if membership.last_used_at is None or (now - membership.last_used_at).total_seconds() > 60:
        Membership.objects.filter(pk=membership.pk).update(last_used_at=now)
        membership.last_used_at = now
