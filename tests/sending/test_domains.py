"""Adding domains (bad input included), audit entries, the alignment rule, key rotation."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.errors import ApplicationError
from accounts.models import AuditEntry
from sending.models import DkimKey, SendingDomain
from sending.selectors import dkim_key_list_signing, sending_domain_for_from_address
from sending.services.domains import (
    dkim_key_retire_due,
    dkim_key_rotate,
    sending_domain_add,
    sending_domain_check,
    sending_domain_remove,
)
from tests.factories import UserFactory, WorkspaceFactory
from tests.sending.conftest import publish

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "value",
    ["", "localhost", "exa mple.com", "-bad.example.com", "a..example.com", "192.0.2.1",
     "user@example.com", "https://example.com/", "x" * 64 + ".example.com", "example.123",
     ("a" * 60 + ".") * 5 + "com"],
)  # fmt: skip
def test_invalid_domain_names_are_refused_and_nothing_is_saved(value):
    with pytest.raises(ApplicationError) as error:
        sending_domain_add(workspace=WorkspaceFactory(), domain=value, acting_user=None)
    assert error.value.message
    assert SendingDomain.objects.count() == 0
    assert DkimKey.objects.count() == 0


def test_uppercase_and_idn_input_is_stored_as_ascii():
    workspace = WorkspaceFactory()
    upper = sending_domain_add(workspace=workspace, domain=" News.Example.COM. ", acting_user=None)
    idn = sending_domain_add(workspace=workspace, domain="Bücher.example", acting_user=None)
    assert upper.domain == "news.example.com"
    assert idn.domain == "xn--bcher-kva.example"
    assert idn.display_name == "bücher.example"


def test_domain_claimed_by_another_workspace_is_refused_without_revealing_it():
    owner = WorkspaceFactory(name="Secret Owner Ltd")
    sending_domain_add(workspace=owner, domain="news.example.com", acting_user=None)
    other = WorkspaceFactory()
    with pytest.raises(ApplicationError) as error:
        sending_domain_add(workspace=other, domain="NEWS.example.com", acting_user=None)
    assert "cannot be added" in error.value.message
    assert "Secret Owner" not in error.value.message
    assert owner.slug not in error.value.message
    assert SendingDomain.objects.filter(workspace=other).count() == 0
    with pytest.raises(ApplicationError, match="already one of your domains"):
        sending_domain_add(workspace=owner, domain="news.example.com", acting_user=None)


def test_adding_and_removing_a_domain_is_audited():
    user = UserFactory()
    workspace = WorkspaceFactory()
    domain = sending_domain_add(workspace=workspace, domain="news.example.com", acting_user=user)
    added = AuditEntry.objects.get(verb="sending_domain.added")
    assert (added.workspace, added.actor, added.details["selector"]) == (workspace, user, "esp1")
    sending_domain_remove(domain=domain, acting_user=user)
    removed = AuditEntry.objects.get(verb="sending_domain.removed")
    assert removed.details == {"domain": "news.example.com"}
    assert SendingDomain.objects.count() == 0


def _verified(dns_server, workspace, name, dmarc="v=DMARC1; p=none") -> SendingDomain:
    domain = sending_domain_add(workspace=workspace, domain=name, acting_user=None)
    publish(dns_server, domain, dmarc=[dmarc])
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    return domain


def test_from_address_must_be_on_a_verified_domain_of_the_workspace(dns_server):
    workspace, other = WorkspaceFactory(), WorkspaceFactory()
    domain = _verified(dns_server, workspace, "news.example.com")
    pending = sending_domain_add(workspace=workspace, domain="shop.example.net", acting_user=None)

    def select(address, ws=workspace):
        return sending_domain_for_from_address(workspace=ws, address=address)

    assert select("hello@news.example.com") == domain
    assert select("Hello@NEWS.Example.com") == domain
    assert select("hello@deals.news.example.com") == domain  # relaxed alignment
    assert select("hello@example.com") is None  # a parent is not covered
    assert select("hello@news.example.com.evil.test") is None
    assert select(f"hello@{pending.domain}") is None  # not verified
    assert select("hello@news.example.com", ws=other) is None  # not this workspace's
    assert select("not an address") is None


def test_subdomain_from_needs_relaxed_alignment(dns_server):
    workspace = WorkspaceFactory()
    strict = _verified(dns_server, workspace, "mail.example.org", "v=DMARC1; p=reject; adkim=s")
    assert sending_domain_for_from_address(workspace=workspace, address="a@mail.example.org")
    assert (
        sending_domain_for_from_address(workspace=workspace, address="a@x.mail.example.org") is None
    )
    assert strict.record_states["dmarc"]["adkim"] == "s"


def test_a_domain_that_breaks_is_no_longer_usable_in_from(dns_server):
    workspace = WorkspaceFactory()
    domain = _verified(dns_server, workspace, "news.example.com")
    del dns_server.zone[f"esp1._domainkey.{domain.domain}"]
    sending_domain_check(domain=domain)
    assert (
        sending_domain_for_from_address(workspace=workspace, address="a@news.example.com") is None
    )


def test_key_rotation_switches_once_verified_and_keeps_the_old_key_for_the_grace_period(
    dns_server, settings
):
    settings.DKIM_ROTATION_GRACE_DAYS = 7
    user = UserFactory()
    domain = _verified(dns_server, WorkspaceFactory(), "news.example.com")
    old = domain.dkim_keys.get()

    new = dkim_key_rotate(domain=domain, acting_user=user)
    assert (new.selector, new.status) == ("esp2", DkimKey.Status.PENDING)
    assert AuditEntry.objects.filter(verb="dkim_key.rotation_started", actor=user).exists()
    with pytest.raises(ApplicationError):
        dkim_key_rotate(domain=domain, acting_user=user)

    # Not yet published: the old key keeps signing and the domain stays verified.
    sending_domain_check(domain=domain)
    domain.refresh_from_db()
    assert domain.status == SendingDomain.Status.VERIFIED
    assert domain.record_states["dkim:esp2"]["state"] == "missing"
    assert dkim_key_list_signing(domain=domain) == [old]

    publish(dns_server, domain)  # now both records are published
    check = sending_domain_check(domain=domain)
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.status == DkimKey.Status.ACTIVE
    assert old.status == DkimKey.Status.RETIRING
    assert old.retire_after == check.checked_at + timedelta(days=7)
    assert dkim_key_list_signing(domain=domain) == [new]
    assert AuditEntry.objects.filter(verb="dkim_key.activated", target_id=new.pk).exists()
    assert AuditEntry.objects.filter(verb="dkim_key.retiring", target_id=old.pk).exists()

    # During the grace period the old record is still checked and shown.
    assert "dkim:esp1" in check.results
    assert dkim_key_retire_due(domain=domain, now=timezone.now() + timedelta(days=6)) == 0
    assert dkim_key_retire_due(domain=domain, now=timezone.now() + timedelta(days=8)) == 1
    old.refresh_from_db()
    assert old.status == DkimKey.Status.RETIRED
    assert AuditEntry.objects.filter(verb="dkim_key.retired", target_id=old.pk).exists()
    check = sending_domain_check(domain=domain)
    assert "dkim:esp1" not in check.results
