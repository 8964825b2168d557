"""The DNS sandbox of `make run`: demo domains verify, real names never leave the machine."""

import pytest

from sending.sandbox import sandbox_zone
from sending.services.domains import sending_domain_add, sending_domain_check
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_domain_under_a_test_tld_verifies_against_the_sandbox(dns_server, platform_pool):
    workspace = WorkspaceFactory()
    demo = sending_domain_add(workspace=workspace, domain="Shop.Example", acting_user=None)
    real = sending_domain_add(workspace=workspace, domain="real-company.com", acting_user=None)
    dns_server.zone = sandbox_zone()

    check = sending_domain_check(domain=demo)
    demo.refresh_from_db()
    assert demo.status == "verified", (
        check.results if hasattr(check, "results") else demo.record_states
    )
    assert {state["state"] for state in demo.record_states.values()} == {"pass"}

    sending_domain_check(domain=real)
    real.refresh_from_db()
    assert real.status != "verified"
    assert real.record_states["dmarc"]["state"] == "missing"
    assert not any("real-company.com" in name for name in dns_server.zone)


def test_sandbox_command_refuses_a_public_address():
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="loopback"):
        call_command("dns_sandbox", host="0.0.0.0")  # noqa: S104
