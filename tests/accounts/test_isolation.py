"""Every workspace URL passes the isolation check; a new URL without a case fails here."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.models import Membership, Role
from tests.factories import InvitationFactory, MembershipFactory, WorkspaceFactory
from tests.isolation import assert_workspace_isolated


def _workspace_url_names(patterns=None, namespace: str = "", prefix: str = "") -> set[str]:
    names = set()
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            child_ns = namespace
            if pattern.namespace:
                child_ns = f"{namespace}{pattern.namespace}:"
            names |= _workspace_url_names(pattern.url_patterns, child_ns, route)
        elif isinstance(pattern, URLPattern) and route.startswith("w/<slug:workspace_slug>/"):
            names.add(namespace + pattern.name)
    return names


def _member_of(workspace, role=Role.EDITOR) -> Membership:
    return MembershipFactory(workspace=workspace, role=role)


def _sending_domain(workspace):
    from sending.services.domains import sending_domain_add

    return sending_domain_add(
        workspace=workspace, domain=f"{workspace.slug}.example.com", acting_user=None
    )


# url name -> (kwargs maker, method, data, htmx, member role that succeeds)
CASES = {
    "accounts:dashboard": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "accounts:workspace_settings": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "accounts:members": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "accounts:member_invite": (
        lambda ws: {},
        "post",
        {"email": "someone.new@example.com", "role": "editor"},
        True,
        Role.ADMIN,
    ),
    "accounts:member_role": (
        lambda ws: {"membership_id": _member_of(ws).pk},
        "post",
        {"role": "viewer"},
        True,
        Role.OWNER,
    ),
    "accounts:member_remove": (
        lambda ws: {"membership_id": _member_of(ws).pk},
        "post",
        None,
        True,
        Role.ADMIN,
    ),
    "accounts:invitation_revoke": (
        lambda ws: {"invitation_id": InvitationFactory(workspace=ws).pk},
        "post",
        None,
        True,
        Role.ADMIN,
    ),
    "campaigns:campaign_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "sending:overview": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "sending:dashboard_panel": (lambda ws: {}, "get", None, True, Role.VIEWER),
    "sending:domain_add": (
        lambda ws: {},
        "post",
        {"domain": "isolation.example.com"},
        False,
        Role.ADMIN,
    ),
    "sending:domain_detail": (
        lambda ws: {"domain_id": _sending_domain(ws).pk},
        "get",
        None,
        False,
        Role.VIEWER,
    ),
    "sending:domain_verify": (
        lambda ws: {"domain_id": _sending_domain(ws).pk},
        "post",
        None,
        True,
        Role.EDITOR,
    ),
    "sending:domain_rotate_key": (
        lambda ws: {"domain_id": _sending_domain(ws).pk},
        "post",
        None,
        True,
        Role.ADMIN,
    ),
    "sending:domain_add_ed25519": (
        lambda ws: {"domain_id": _sending_domain(ws).pk},
        "post",
        None,
        True,
        Role.ADMIN,
    ),
    "sending:domain_remove": (
        lambda ws: {"domain_id": _sending_domain(ws).pk},
        "post",
        None,
        False,
        Role.ADMIN,
    ),
    "tracking:reports": (lambda ws: {}, "get", None, False, Role.VIEWER),
}


def _discovered_cases() -> dict:
    """Other apps' cases, from tests/<app>/isolation_cases*.py modules (a CASES dict each)."""
    import importlib
    import pkgutil

    import tests

    cases = {}
    for package in pkgutil.iter_modules(tests.__path__):
        if not package.ispkg:
            continue
        subpackage = importlib.import_module(f"tests.{package.name}")
        for module in pkgutil.iter_modules(subpackage.__path__):
            if module.name.startswith("isolation_cases"):
                cases |= importlib.import_module(f"tests.{package.name}.{module.name}").CASES
    return cases


CASES |= _discovered_cases()


def test_every_workspace_url_has_an_isolation_case():
    assert _workspace_url_names() == set(CASES)


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", sorted(CASES))
def test_workspace_url_is_isolated(url_name, smtp_sink):
    make_kwargs, method, data, htmx, member_role = CASES[url_name]
    workspace = WorkspaceFactory()
    url = reverse(url_name, kwargs={"workspace_slug": workspace.slug, **make_kwargs(workspace)})
    assert_workspace_isolated(
        url=url, workspace=workspace, method=method, data=data, htmx=htmx, member_role=member_role
    )


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", ["accounts:member_role", "accounts:member_remove"])
def test_member_of_another_workspace_is_404_by_id(url_name, member_client):
    home, foreign = WorkspaceFactory(), WorkspaceFactory()
    owner = member_client(home, Role.OWNER)
    foreign_member = _member_of(foreign)
    url = reverse(
        url_name, kwargs={"workspace_slug": home.slug, "membership_id": foreign_member.pk}
    )
    response = owner.post(url, {"role": "viewer"})
    assert response.status_code == 404
    foreign_member.refresh_from_db()
    assert foreign_member.role == Role.EDITOR


@pytest.mark.django_db
def test_invitation_of_another_workspace_is_404(member_client):
    home, foreign = WorkspaceFactory(), WorkspaceFactory()
    owner = member_client(home, Role.OWNER)
    invitation = InvitationFactory(workspace=foreign)
    url = reverse(
        "accounts:invitation_revoke",
        kwargs={"workspace_slug": home.slug, "invitation_id": invitation.pk},
    )
    assert owner.post(url).status_code == 404
    invitation.refresh_from_db()


@pytest.mark.django_db
def test_unknown_workspace_slug_is_404(member_client):
    client = member_client(WorkspaceFactory())
    response = client.get("/w/no-such-workspace/")
    assert response.status_code == 404
    assert b"This page does not exist" in response.content
