"""The workspace isolation check that every workspace URL must pass.

For a URL of `workspace`: a member of another workspace gets 404 (the workspace is not
revealed), a visitor who is not signed in is sent to sign in, and a viewer of the workspace
cannot change anything with POST (403). Finally a member with `member_role` reaches it, so
that a URL that 404s for everyone cannot pass by accident.
"""

from django.test import Client

from accounts.models import Role, Workspace
from tests.factories import MembershipFactory


def _request(client: Client, method: str, url: str, data: dict | None, htmx: bool):
    headers = {"HX-Request": "true"} if htmx else {}
    return getattr(client, method)(url, data or {}, headers=headers)


def _client_for(workspace: Workspace, role: str) -> Client:
    membership = MembershipFactory(workspace=workspace, role=role)
    client = Client()
    client.force_login(membership.user)
    return client


def assert_workspace_isolated(
    *,
    url: str,
    workspace: Workspace,
    method: str = "get",
    data: dict | None = None,
    htmx: bool = False,
    member_role: str = Role.OWNER,
    member_statuses: tuple[int, ...] = (200, 302),
    download: bool = False,
) -> None:
    outsider = _client_for(MembershipFactory().workspace, Role.OWNER)
    response = _request(outsider, method, url, data, htmx)
    assert response.status_code == 404, (
        f"{method.upper()} {url} by an outsider: {response.status_code}"
    )

    anonymous = _request(Client(), method, url, data, htmx)
    if htmx:  # htmx is told to load the sign-in page instead of swapping it into a panel
        assert anonymous.get("HX-Redirect", "").startswith("/accounts/login/"), (
            f"{method.upper()} {url} anonymous htmx: {anonymous.status_code}"
        )
    else:
        assert anonymous.status_code == 302, (
            f"{method.upper()} {url} anonymous: {anonymous.status_code}"
        )
        assert "/accounts/login/" in anonymous["Location"]

    viewer = _client_for(workspace, Role.VIEWER)
    viewer_post = _request(viewer, "post", url, data, htmx)
    assert viewer_post.status_code in (403, 405), (
        f"POST {url} by a viewer: {viewer_post.status_code}"
    )

    member = _client_for(workspace, member_role)
    response = _request(member, method, url, data, htmx)
    assert response.status_code in member_statuses, (
        f"{method.upper()} {url} by a member ({member_role}): {response.status_code}"
    )
    if download:
        assert response.get("Content-Disposition", "").startswith("attachment")
