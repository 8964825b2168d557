import pytest

from sending.demo import DEMO_DOMAIN, sending_demo_seed
from sending.models import DnsblZone, IpPool, SendingDomain
from sending.selectors import sending_domain_for_from_address
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_demo_seed_adds_a_pre_verified_domain_without_querying_dns(dns_server):
    workspace = WorkspaceFactory(slug="demo")
    domain = sending_demo_seed(workspace=workspace)
    assert sending_demo_seed(workspace=workspace) == domain  # idempotent
    assert SendingDomain.objects.get().domain == DEMO_DOMAIN
    assert domain.status == SendingDomain.Status.VERIFIED
    assert {r["state"] for r in domain.record_states.values()} == {"pass"}
    assert sending_domain_for_from_address(workspace=workspace, address=f"hi@{DEMO_DOMAIN}")
    assert IpPool.objects.get(is_default=True).ips.get().address == "127.0.0.1"
    assert not DnsblZone.objects.filter(is_enabled=True).exists()
    assert dns_server.queries == []
