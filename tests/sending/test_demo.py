import datetime as dt

import pytest
from django.utils import timezone

from sending.demo import DEMO_DOMAIN, sending_demo_new_workspace_seed, sending_demo_seed
from sending.models import DnsblZone, IpPool, SendingDomain, SendingIp
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
    demo_ip = IpPool.objects.get(is_default=True).ips.get()
    assert demo_ip.address == "127.0.0.1"
    assert demo_ip.state == SendingIp.State.WARMING
    assert demo_ip.warmup_started_on == timezone.localdate() - dt.timedelta(days=4)
    assert not DnsblZone.objects.filter(is_enabled=True).exists()
    assert dns_server.queries == []


def _demo_counts() -> tuple:
    from contacts.models import Suppression
    from sending.models import Delivery, DeliveryAttempt, FeedbackEvent, InboundMessage

    return tuple(
        model.objects.count()
        for model in (Delivery, DeliveryAttempt, FeedbackEvent, InboundMessage, Suppression)
    )


def test_demo_seed_adds_a_sent_campaign_with_what_came_back_once():
    from campaigns.models import Campaign
    from contacts.models import Contact
    from sending.demo import DEMO_SENT_CAMPAIGN_NAME
    from sending.models import FeedbackEvent, InboundMessage
    from sending.selectors import campaign_feedback_counts
    from sending.verp import verp_read

    workspace = WorkspaceFactory(slug="demo")
    Contact.objects.bulk_create(
        Contact(workspace=workspace, email=f"reader{n}@mail{n}.test") for n in range(12)
    )
    sending_demo_seed(workspace=workspace)
    counts = _demo_counts()
    sending_demo_seed(workspace=workspace)  # idempotent
    assert _demo_counts() == counts

    campaign = Campaign.objects.get(workspace=workspace, name=DEMO_SENT_CAMPAIGN_NAME)
    assert campaign.status == "sent"
    deliveries = campaign.deliveries.all()
    assert deliveries.count() == 10
    assert deliveries.filter(state="sent").count() == 8
    assert campaign_feedback_counts(campaign=campaign) == {
        "hard": 1, "soft": 0, "block": 1, "unknown": 0, "complained": 1,
    }  # fmt: skip
    hard = deliveries.get(bounce_class="hard")
    assert hard.attempts.get().smtp_code == 250  # taken by the relay, bounced by DSN later
    event = FeedbackEvent.objects.get(delivery=hard)
    assert event.diagnostic.startswith("smtp; 550 5.1.1")
    assert event.diagnostic.count(hard.address) == 1
    assert FeedbackEvent.objects.get(delivery__bounce_class="block").status == "5.7.1"
    complaint = FeedbackEvent.objects.get(kind="complaint")
    assert complaint.feedback_type == "abuse"
    assert complaint.delivery.complained_at is not None
    assert Contact.objects.get(pk=hard.contact_id).status == "bounced"
    assert Contact.objects.get(pk=complaint.delivery.contact_id).status == "complained"
    processed, unparsed = (
        InboundMessage.objects.get(status="processed"),
        InboundMessage.objects.get(status="unparsed"),
    )
    assert processed.delivery == hard
    assert verp_read(processed.recipients[0]) == hard.pk  # a genuine VERP address
    assert hard.address.encode() in bytes(processed.raw)
    assert unparsed.workspace is None
    assert unparsed.error


def test_demo_seed_adds_no_sent_campaign_without_contacts():
    from campaigns.models import Campaign

    sending_demo_seed(workspace=WorkspaceFactory(slug="demo"))
    assert not Campaign.objects.exists()


def test_demo_seed_starts_the_warm_up_of_an_ip_seeded_before_warm_ups_existed():
    pool = IpPool.objects.create(name="Shared demo pool", is_default=True)
    SendingIp.objects.create(
        address="127.0.0.1", pool=pool, helo_hostname="localhost", state=SendingIp.State.ACTIVE
    )
    sending_demo_seed(workspace=WorkspaceFactory(slug="demo"))
    demo_ip = SendingIp.objects.get()
    assert demo_ip.state == SendingIp.State.WARMING
    assert demo_ip.warmup_started_on == timezone.localdate() - dt.timedelta(days=4)


def test_demo_new_workspace_waits_for_approval_with_low_quotas(settings):
    from accounts.models import Membership
    from campaigns.models import Campaign
    from sending.models import SendingPolicy
    from sending.policy import campaign_awaits_approval
    from sending.selectors import sending_domain_for_from_address
    from tests.factories import UserFactory

    user = UserFactory()
    sending_demo_seed(workspace=WorkspaceFactory(slug="demo"))
    campaign = sending_demo_new_workspace_seed(user=user)
    assert sending_demo_new_workspace_seed(user=user) == campaign  # idempotent
    assert Campaign.objects.filter(workspace=campaign.workspace).count() == 1

    assert campaign.workspace.name == "Acme (new)"
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign_awaits_approval(campaign=campaign)
    policy = SendingPolicy.objects.get(workspace=campaign.workspace)
    assert (policy.daily_quota, policy.hourly_quota) == (
        settings.SENDING_NEW_WORKSPACE_DAILY_QUOTA,
        settings.SENDING_NEW_WORKSPACE_HOURLY_QUOTA,
    )
    assert sending_domain_for_from_address(
        workspace=campaign.workspace, address=campaign.from_email
    )
    assert Membership.objects.get(workspace=campaign.workspace).user == user
