import re

import pytest
from django.core.management import call_command

from accounts.models import Membership, User, Workspace
from accounts.selectors import user_default_workspace

pytestmark = pytest.mark.django_db


def _unsigned(output: str) -> str:
    return re.sub(r":[0-9A-Za-z]+:[\w-]{43}", ":<signed>", output)


def test_seed_demo_is_idempotent_and_its_login_works(client, capsys):
    call_command("seed_demo", force=True)
    first = capsys.readouterr().out
    counts = (User.objects.count(), Workspace.objects.count(), Membership.objects.count())
    call_command("seed_demo", force=True)
    # The same output, but for the time each signed link was made (a second may pass).
    assert _unsigned(capsys.readouterr().out) == _unsigned(first)
    assert (User.objects.count(), Workspace.objects.count(), Membership.objects.count()) == counts

    demo = Workspace.objects.get(slug="demo")
    assert demo.status == Workspace.Status.ACTIVE
    assert demo.postal_address
    password = first.split("demo@example.com / ")[1].split()[0]
    response = client.post("/accounts/login/", {"email": "demo@example.com", "password": password})
    assert response.status_code == 302
    assert client.get(f"/w/{demo.slug}/").status_code == 200
    assert Membership.objects.filter(user__email="demo@example.com").count() == 3
    # "Acme (new)" shows traffic shaping; signing in does not land there.
    assert response.url in ("/w/demo/", "/w/acme/", "/")
    assert user_default_workspace(user=User.objects.get(email="demo@example.com")).slug != (
        "acme-new"
    )


def test_seed_demo_password_comes_from_environment(monkeypatch, capsys):
    monkeypatch.setenv("DEMO_PASSWORD", "another-demo-pass")
    call_command("seed_demo", force=True)
    assert "demo@example.com / another-demo-pass" in capsys.readouterr().out
    assert User.objects.get(email="demo@example.com").check_password("another-demo-pass")


def test_seed_demo_refuses_without_debug_unless_forced():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="DEBUG=1"):
        call_command("seed_demo")
    assert not User.objects.filter(email="operator@example.com").exists()


def test_seed_demo_campaign_passes_the_checklist_and_shows_every_campaign_feature(capsys):
    from campaigns.checks import presend_checks
    from campaigns.models import AbTest, Campaign, MediaImage, Template

    call_command("seed_demo", force=True)
    out = capsys.readouterr().out
    demo = Workspace.objects.get(slug="demo")
    campaign = Campaign.objects.get(workspace=demo, name="Spring trail report")
    assert f"/w/demo/campaigns/{campaign.pk}/review/" in out

    checklist = presend_checks(campaign=campaign)
    assert checklist.may_send, [check.message for check in checklist.blocking]
    assert checklist.audience.sendable > 0
    assert campaign.template.versions.count() == 2
    assert MediaImage.objects.get(workspace=demo).name in campaign.html or "/m/" in campaign.html
    assert AbTest.objects.get(campaign__workspace=demo).campaign.variants.count() == 2
    assert Template.objects.filter(workspace=demo, name="Demo Outdoor brand").exists()


def test_seed_demo_shows_a_sent_campaign_with_bounces_and_complaints_once(client, capsys):
    from campaigns.models import Campaign
    from sending.models import Delivery, FeedbackEvent, InboundMessage

    def counts():
        return tuple(m.objects.count() for m in (Campaign, Delivery, FeedbackEvent, InboundMessage))

    call_command("seed_demo", force=True)
    first = counts()
    call_command("seed_demo", force=True)
    assert counts() == first
    assert first[1:] == (10, 3, 2)

    demo = Workspace.objects.get(slug="demo")
    welcome = Campaign.objects.get(workspace=demo, name="Welcome")
    password = capsys.readouterr().out.split("demo@example.com / ")[1].split()[0]
    client.post("/accounts/login/", {"email": "demo@example.com", "password": password})
    panel = client.get(f"/w/demo/sending/campaigns/{welcome.pk}/progress/").content.decode()
    assert 'data-fact="bounced_hard">1<' in panel
    assert 'data-fact="bounced_block">1<' in panel
    assert 'data-fact="complained">1<' in panel
    hard = Delivery.objects.get(campaign=welcome, bounce_class="hard")
    detail = client.get(f"/w/demo/sending/campaigns/{welcome.pk}/deliveries/{hard.pk}/")
    assert detail.status_code == 200
    assert "User unknown in virtual mailbox table" in detail.content.decode()


class _Sink:
    """A loopback SMTP server standing in for `make run`'s sink."""

    def __init__(self):
        self.received: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 Queued"


@pytest.fixture
def sink(settings, free_port):
    from aiosmtpd.controller import Controller

    from sending.transports import transports_close

    handler = _Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.SENDING_TRANSPORT = "smtp"
    settings.SENDING_SMTP_HOST, settings.SENDING_SMTP_PORT = "127.0.0.1", controller.port
    settings.SENDING_SMTP_SECURITY, settings.SENDING_SMTP_USERNAME = "none", ""
    transports_close()
    try:
        yield handler
    finally:
        transports_close()
        controller.stop()


def test_seed_demo_shows_traffic_shaping_a_new_workspace_waits_for_approval(capsys, sink):
    import datetime as dt

    from django.conf import settings
    from django.utils import timezone

    from accounts.models import AuditEntry
    from campaigns.models import Campaign
    from contacts.models import Contact
    from sending.models import Delivery, SendingDomain, SendingIp, SendingPolicy
    from sending.pipeline import campaigns_start_due, chunk_send
    from sending.policy import campaign_awaits_approval, campaign_list_awaiting_approval
    from sending.services.policy import campaign_approve

    def counts():
        models = (Campaign, Contact, SendingDomain, SendingIp, SendingPolicy, AuditEntry)
        return tuple(model.objects.count() for model in models)

    call_command("seed_demo", force=True)
    first = counts()
    ip = SendingIp.objects.get(address="127.0.0.1")
    call_command("seed_demo", force=True)
    assert counts() == first
    assert SendingIp.objects.get(address="127.0.0.1").state == ip.state
    out = capsys.readouterr().out
    assert "/admin/campaigns/campaign/?approval=awaiting" in out

    assert ip.state == SendingIp.State.WARMING
    assert ip.pool.is_default
    assert ip.warmup_started_on == timezone.localdate() - dt.timedelta(days=4)

    new = Workspace.objects.get(slug="acme-new")
    assert new.name == "Acme (new)"
    policy = SendingPolicy.objects.get(workspace=new)
    assert policy.requires_approval
    assert policy.daily_quota == settings.SENDING_NEW_WORKSPACE_DAILY_QUOTA
    assert policy.hourly_quota == settings.SENDING_NEW_WORKSPACE_HOURLY_QUOTA
    assert SendingDomain.objects.get(workspace=new).status == SendingDomain.Status.VERIFIED
    campaign = Campaign.objects.get(workspace=new)
    assert campaign.status == Campaign.Status.SCHEDULED
    assert list(campaign_list_awaiting_approval()) == [campaign]

    demo = Workspace.objects.get(slug="demo")
    assert not SendingPolicy.objects.filter(workspace=demo).exists()
    assert not campaign_awaits_approval(
        campaign=Campaign.objects.get(workspace=demo, name="Spring trail report")
    )

    assert campaigns_start_due() == []  # scheduled for now, but not approved
    campaign_approve(campaign=campaign, acting_user=User.objects.get(is_staff=True))
    assert campaigns_start_due() == [campaign.pk]
    sendable = Contact.objects.filter(workspace=new, status=Contact.Status.ACTIVE).count()
    deliveries = Delivery.objects.filter(campaign=campaign)
    assert 0 < deliveries.count() <= sendable <= 5
    while chunk_send(campaign_id=campaign.pk) is not None:
        pass
    assert deliveries.filter(state=Delivery.State.SENT).count() == deliveries.count()
    assert len(sink.received) == deliveries.count()  # to the sink, after approval
