"""Test sends through django.core.mail to a real SMTP server on loopback."""

import pytest
from django.test import TestCase
from django.urls import reverse

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from campaigns import services, test_send
from campaigns.models import Campaign
from campaigns.preview import PREVIEW_LINK
from campaigns.starters import starter_get
from campaigns.test_send import campaign_test_send, split_addresses
from compliance.tokens import Purpose, token_read
from tests.campaigns.test_checks import ready_campaign
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def _test_send(**kwargs):
    """The service, with the transaction's commit callbacks run (the lane is handed the
    messages on commit; Celery runs eagerly in tests)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return campaign_test_send(**kwargs)


def _url(name: str, campaign: Campaign) -> str:
    return reverse(
        f"campaigns:{name}",
        kwargs={"workspace_slug": campaign.workspace.slug, "campaign_id": campaign.pk},
    )


def _parts(message) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_content()
        for part in message.walk()
        if not part.is_multipart()
    }


def test_each_address_gets_the_message_personalised_for_the_chosen_contact(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    grace = ContactFactory(workspace=workspace, first_name="Grace", last_name="Hopper")
    sent = _test_send(
        campaign=campaign,
        addresses=["one@example.net", "two@example.net"],
        contact=grace,
        acting_user=None,
    )
    assert sent == ["one@example.net", "two@example.net"]
    assert [rcpts for _, rcpts in smtp_sink.envelopes] == [["one@example.net"], ["two@example.net"]]
    for address in sent:
        (message,) = smtp_sink.to(address)
        assert message["To"] == address
        assert message["Subject"] == "[Test] Hello Grace"
        assert message.get_content_type() == "multipart/alternative"
        parts = _parts(message)
        assert "Grace" in parts["text/plain"]
        assert "Grace" in parts["text/html"]
        # The contact's own working link: a token for Grace and this campaign.
        header = message["List-Unsubscribe"].strip()
        assert header.startswith("<http://testserver/u/")
        assert header.endswith(">")
        claim = token_read(header[len("<http://testserver/u/") : -1], purpose=Purpose.UNSUBSCRIBE)
        assert (claim.contact_id, claim.campaign_id) == (grace.pk, campaign.pk)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "Shop" in message["From"]
        assert message["From"].addresses[0].addr_spec == "news@shop.example"


def test_without_a_contact_the_test_uses_sample_values_and_placeholder_links(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    (message,) = smtp_sink.messages
    assert message["Subject"] == "[Test] Hello Alex"
    assert message["List-Unsubscribe"].strip() == f"<{PREVIEW_LINK}>"
    assert PREVIEW_LINK in _parts(message)["text/html"]


def test_non_ascii_from_name_and_emoji_subject_are_encoded(workspace, smtp_sink):
    campaign = ready_campaign(
        workspace, from_name="Café Müller", subject="🎉 Sale for {{ first_name }}"
    )
    _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    (message,) = smtp_sink.messages
    assert message["Subject"] == "[Test] 🎉 Sale for Alex"
    assert message["From"].addresses[0].display_name == "Café Müller"
    raw = dict(message.raw_items())
    for name in ("Subject", "From"):
        assert raw[name].isascii(), f"{name} was sent unencoded: {raw[name]!r}"
        assert "=?utf-8?" in raw[name].lower()


def test_line_break_in_the_from_name_cannot_add_a_header(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(from_name="Shop\r\nBcc: victim@example.org")
    campaign.refresh_from_db()
    _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    (message,) = smtp_sink.messages
    assert message["Bcc"] is None
    assert message["From"].addresses[0].display_name == "Shop Bcc: victim@example.org"
    assert smtp_sink.envelopes[0][1] == ["me@example.net"]


def test_line_break_in_the_subject_is_refused_with_a_clear_error(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(subject="Hi\r\nBcc: victim@example.org")
    campaign.refresh_from_db()
    with pytest.raises(ApplicationError, match="The subject must be one line"):
        _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    assert smtp_sink.messages == []


def test_six_addresses_are_refused(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    addresses = [f"person{n}@example.net" for n in range(6)]
    with pytest.raises(ApplicationError, match="at most 5 addresses"):
        _test_send(campaign=campaign, addresses=addresses, contact=None, acting_user=None)
    assert smtp_sink.messages == []


def test_duplicates_count_once(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    addresses = split_addresses("A@example.net, a@example.net\nb@example.net;b@example.net")
    sent = _test_send(campaign=campaign, addresses=addresses * 3, contact=None, acting_user=None)
    assert sent == ["A@example.net", "b@example.net"]
    assert len(smtp_sink.messages) == 2


@pytest.mark.parametrize(
    "bad", ["not-an-address", "me@localhost", "a@b.example\r\nBcc: x@y.example"]
)
def test_a_bad_address_is_refused_by_name(workspace, smtp_sink, bad):
    campaign = ready_campaign(workspace)
    with pytest.raises(ApplicationError) as caught:
        _test_send(
            campaign=campaign, addresses=["ok@example.net", bad], contact=None, acting_user=None
        )
    assert "is not a valid email address" in caught.value.message
    assert bad.split("\r")[0] in caught.value.message
    assert smtp_sink.messages == []


def test_a_draft_may_be_tested_before_its_checklist_passes(workspace, smtp_sink):
    campaign = services.campaign_create(
        workspace=workspace, name="Draft", starter=starter_get("plain"), acting_user=None
    )
    services.campaign_update(
        campaign=campaign, acting_user=None, subject="Hi", from_email="news@unverified.example"
    )
    _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    assert len(smtp_sink.messages) == 1


def test_a_template_that_does_not_compile_is_refused_with_the_error(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(html="<p>{% for x in y %}</p>")
    campaign.refresh_from_db()
    with pytest.raises(ApplicationError, match="does not compile: Unknown tag “for”"):
        _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    assert smtp_sink.messages == []


def test_a_campaign_without_a_from_address_is_refused(workspace, smtp_sink):
    campaign = ready_campaign(workspace, from_email="")
    with pytest.raises(ApplicationError, match="valid From address"):
        _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)


def test_a_contact_of_another_workspace_is_refused(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    with pytest.raises(ApplicationError):
        _test_send(
            campaign=campaign,
            addresses=["me@example.net"],
            contact=ContactFactory(),
            acting_user=None,
        )
    assert smtp_sink.messages == []


def test_test_sends_are_rate_limited_per_workspace(workspace, smtp_sink, monkeypatch):
    monkeypatch.setattr(test_send, "SENDS_PER_HOUR", 2)
    campaign = ready_campaign(workspace)
    for _ in range(2):
        _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    with pytest.raises(ApplicationError, match="try again later"):
        _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    assert len(smtp_sink.messages) == 2


def test_the_page_never_waits_on_the_mail_server(workspace, settings, free_port):
    """The test is handed to the transactional lane, whose worker retries an unreachable
    server with back-off: the marketer's request neither waits nor fails."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    campaign = ready_campaign(workspace)
    sent = _test_send(
        campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None
    )
    assert sent == ["me@example.net"]


def test_a_test_send_is_audited_with_the_number_of_addresses(workspace, smtp_sink, user):
    campaign = ready_campaign(workspace)
    _test_send(
        campaign=campaign,
        addresses=["a@example.net", "b@example.net"],
        contact=None,
        acting_user=user,
    )
    entry = AuditEntry.objects.get(verb="campaign.test_sent", target_id=str(campaign.pk))
    assert entry.actor == user
    assert entry.details["addresses_count"] == 2


# ---------------------------------------------------------------- the view


def test_editor_sends_a_test_from_the_review_tab(workspace, member_client, smtp_sink):
    campaign = ready_campaign(workspace)
    contact = ContactFactory(workspace=workspace, first_name="Grace")
    client = member_client(workspace, Role.EDITOR)
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            _url("campaign_test_send", campaign),
            {"addresses": "one@example.net\ntwo@example.net", "contact": str(contact.pk)},
            follow=True,
        )
    assert response.redirect_chain == [(_url("campaign_review", campaign), 302)]
    assert b"Test on its way to one@example.net, two@example.net" in response.content
    assert len(smtp_sink.messages) == 2
    assert smtp_sink.messages[0]["Subject"] == "[Test] Hello Grace"


def test_view_shows_the_bad_address_and_keeps_what_was_typed(workspace, member_client, smtp_sink):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_test_send", campaign), {"addresses": "ok@example.net, nope", "contact": ""}
    )
    assert response.status_code == 400
    assert "“nope” is not a valid email address." in response.content.decode()
    assert b"ok@example.net, nope</textarea>" in response.content
    assert smtp_sink.messages == []


def test_view_refuses_a_contact_of_another_workspace(workspace, member_client, smtp_sink):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("campaign_test_send", campaign),
        {"addresses": "ok@example.net", "contact": str(ContactFactory().pk)},
    )
    assert response.status_code == 400
    assert smtp_sink.messages == []


def test_viewer_cannot_send_a_test(workspace, member_client, smtp_sink):
    campaign = ready_campaign(workspace)
    client = member_client(workspace, Role.VIEWER)
    response = client.post(_url("campaign_test_send", campaign), {"addresses": "me@example.net"})
    assert response.status_code == 403
    assert smtp_sink.messages == []
    assert not AuditEntry.objects.filter(verb="campaign.test_sent").exists()


def test_line_break_in_the_reply_to_is_a_clear_error_not_a_broken_message(workspace, smtp_sink):
    campaign = ready_campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(reply_to="help@shop.example\r\nBcc: x@y.example")
    campaign.refresh_from_db()
    with pytest.raises(ApplicationError, match="invalid header"):
        _test_send(campaign=campaign, addresses=["me@example.net"], contact=None, acting_user=None)
    assert smtp_sink.messages == []
