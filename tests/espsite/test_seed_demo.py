import pytest
from django.core.management import call_command

from accounts.models import Membership, User, Workspace

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_its_login_works(client, capsys):
    call_command("seed_demo", force=True)
    first = capsys.readouterr().out
    counts = (User.objects.count(), Workspace.objects.count(), Membership.objects.count())
    call_command("seed_demo", force=True)
    assert capsys.readouterr().out == first
    assert (User.objects.count(), Workspace.objects.count(), Membership.objects.count()) == counts

    demo = Workspace.objects.get(slug="demo")
    assert demo.status == Workspace.Status.ACTIVE
    assert demo.postal_address
    password = first.split("demo@example.com / ")[1].split()[0]
    response = client.post("/accounts/login/", {"email": "demo@example.com", "password": password})
    assert response.status_code == 302
    assert client.get(f"/w/{demo.slug}/").status_code == 200
    assert Membership.objects.filter(user__email="demo@example.com").count() == 2


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
