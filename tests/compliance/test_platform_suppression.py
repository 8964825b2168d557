"""Platform suppression (workspace empty, managed by operators in the admin) binds every
workspace: imports, hand-added contacts and the send check all refuse the address."""

import pytest

from accounts.errors import ApplicationError
from contacts.models import Suppression
from contacts.services.contacts import contact_create
from contacts.suppressions import address_hash, may_send_to, suppressed_hashes
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_platform_suppression_is_honoured_by_every_workspace():
    Suppression.objects.create(
        workspace=None, address_hash=address_hash("abuse@example.com"), email="abuse@example.com",
        reason="manual", source="role account",
    )  # fmt: skip
    for workspace in (WorkspaceFactory(), WorkspaceFactory(), WorkspaceFactory()):
        assert not may_send_to(workspace=workspace, address="ABUSE@example.com")
        assert suppressed_hashes(workspace=workspace, addresses=["abuse@example.com"])
        with pytest.raises(ApplicationError, match="suppression"):
            contact_create(workspace=workspace, email="abuse@example.com", acting_user=None)
        assert may_send_to(workspace=workspace, address="someone@example.com")


def test_operator_adds_a_platform_suppression_in_the_admin(operator_client):
    response = operator_client.get("/admin/contacts/suppression/")
    assert response.status_code == 200
