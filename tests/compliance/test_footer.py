import pytest

from compliance.footer import (
    NO_OPT_OUT_LINK,
    NO_POSTAL_ADDRESS,
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
    footer_problems,
    workspace_may_send,
)
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_workspace_without_postal_address_may_not_send():
    workspace = WorkspaceFactory(postal_address="  ")
    assert footer_problems(workspace=workspace) == [NO_POSTAL_ADDRESS]
    assert not workspace_may_send(workspace=workspace)


def test_workspace_with_postal_address_may_send():
    workspace = WorkspaceFactory(postal_address="1 Main St, Springfield")
    assert footer_problems(workspace=workspace) == []
    assert workspace_may_send(workspace=workspace)


@pytest.mark.parametrize(
    "html",
    [
        f'<a href="{UNSUBSCRIBE_PLACEHOLDER}">Unsubscribe</a>',
        f'<a href="{PREFERENCES_PLACEHOLDER}">Preferences</a>',
        '<a href="{{unsubscribe_url}}">Unsubscribe</a>',
    ],
)
def test_body_with_an_opt_out_placeholder_passes(html):
    workspace = WorkspaceFactory(postal_address="1 Main St")
    assert footer_problems(workspace=workspace, html=html) == []


def test_body_without_an_opt_out_placeholder_fails():
    workspace = WorkspaceFactory(postal_address="")
    problems = footer_problems(workspace=workspace, html="<p>Hello {{ first_name }}</p>")
    assert problems == [NO_POSTAL_ADDRESS, NO_OPT_OUT_LINK]
    assert not workspace_may_send(workspace=workspace, html="<p>{{ unsubscribe }}</p>")
