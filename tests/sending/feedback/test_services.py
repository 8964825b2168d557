"""The rules feedback applies, on real deliveries in the database: a hard bounce suppresses
and marks the contact, N soft bounces within M days suppress, blocks count against the
From domain and leave the contact alone, unknown is recorded only; complaints and
unsubscribes act at once; every event once."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from accounts.models import Workspace
from campaigns.models import Campaign
from contacts.models import Contact, Subscription, Suppression
from sending.models import Delivery, FeedbackEvent
from sending.selectors import feedback_block_counts, feedback_rates
from sending.services.esp_events import esp_bounce_class
from sending.services.feedback import (
    INBOUND,
    bounce_record,
    complaint_record,
    deferral_record,
    unsubscribe_record,
)
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db

State = Delivery.State
DOMAIN = "news.shop.example"


def make_campaign(workspace: Workspace, *, from_email: str = f"hello@{DOMAIN}") -> Campaign:
    return Campaign.objects.create(
        workspace=workspace,
        name="Spring",
        subject="Hi",
        from_name="Shop",
        from_email=from_email,
        status=Campaign.Status.SENT,
    )


def make_delivery(
    *,
    workspace: Workspace | None = None,
    campaign: Campaign | None = None,
    address: str = "reader@mail.test",
    state: str = State.SENT,
    contact: bool | Contact = True,
    lists: int = 2,
    message_id: str = "",
) -> Delivery:
    """A delivery that left (by default), to a contact subscribed to `lists` lists."""
    workspace = workspace or (campaign.workspace if campaign else WorkspaceFactory())
    campaign = campaign or make_campaign(workspace)
    if contact is True:
        contact = ContactFactory(workspace=workspace, email=address)
        for _ in range(lists):
            SubscriptionFactory(
                contact=contact, contact_list=ContactListFactory(workspace=workspace)
            )
    return Delivery.objects.create(
        workspace=workspace,
        campaign=campaign,
        contact=contact or None,
        address=address,
        state=state,
        sent_at=timezone.now() if state in (State.SENT, State.UNKNOWN) else None,
        lease_token=uuid.uuid4() if state in (State.CLAIMED, State.IN_FLIGHT) else None,
        message_id=message_id,
    )


def suppressions(workspace: Workspace) -> dict[str, str]:
    return dict(Suppression.objects.filter(workspace=workspace).values_list("email", "reason"))


def _bounce(delivery: Delivery, bounce_class: str, **fields) -> FeedbackEvent | None:
    fields.setdefault("status", "5.1.1" if bounce_class == "hard" else "")
    fields.setdefault("diagnostic", f"smtp; 550 {bounce_class} reasons")
    fields.setdefault("source", INBOUND)
    return bounce_record(delivery=delivery, bounce_class=bounce_class, **fields)


# --- bounces --------------------------------------------------------------------------------


def test_hard_bounce_suppresses_the_address_and_marks_the_contact_bounced():
    delivery = make_delivery()
    event = _bounce(
        delivery,
        "hard",
        diagnostic="smtp; 550 5.1.1 <reader@mail.test>: user unknown",
        remote_mta="mx.mail.test",
        rule="mailbox unknown",
    )

    assert event is not None
    assert event.kind == FeedbackEvent.Kind.BOUNCE
    assert (event.bounce_class, event.status, event.remote_mta) == ("hard", "5.1.1", "mx.mail.test")
    assert event.address == "reader@mail.test"
    assert event.sending_domain == DOMAIN
    delivery.refresh_from_db()
    assert delivery.state == State.BOUNCED
    assert delivery.bounce_class == "hard"
    assert delivery.bounced_at is not None
    assert "user unknown" in delivery.last_response
    assert suppressions(delivery.workspace) == {"reader@mail.test": "hard_bounce"}
    source = Suppression.objects.get(workspace=delivery.workspace).source
    assert "Spring" in source
    assert "user unknown" in source
    assert Contact.objects.get(pk=delivery.contact_id).status == Contact.Status.BOUNCED


@pytest.mark.parametrize("state", [State.DEFERRED, State.UNKNOWN])
def test_a_bounce_ends_a_deferred_or_unknown_delivery(state):
    delivery = make_delivery(state=state)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    _bounce(delivery, "soft")
    delivery.refresh_from_db()
    assert delivery.state == State.BOUNCED
    assert delivery.next_attempt_at is None


def test_a_bounce_leaves_a_failed_delivery_failed_but_is_recorded():
    delivery = make_delivery(state=State.FAILED)
    assert _bounce(delivery, "hard") is not None
    delivery.refresh_from_db()
    assert delivery.state == State.FAILED
    assert suppressions(delivery.workspace) == {"reader@mail.test": "hard_bounce"}


def test_soft_bounces_suppress_at_the_limit_within_the_window(settings):
    settings.FEEDBACK_SOFT_BOUNCE_LIMIT, settings.FEEDBACK_SOFT_BOUNCE_DAYS = 3, 14
    workspace = WorkspaceFactory()
    contact = ContactFactory(workspace=workspace, email="Full@Mail.test")
    deliveries = [
        make_delivery(campaign=make_campaign(workspace), address=addr, contact=contact)
        for addr in ("Full@Mail.test", "full@mail.test", "FULL@mail.test")
    ]
    _bounce(deliveries[0], "soft")
    # Two reports of one bounce count once.
    _bounce(deliveries[1], "soft")
    _bounce(deliveries[1], "soft")
    assert suppressions(workspace) == {}

    _bounce(deliveries[2], "soft", diagnostic="452 4.2.2 mailbox full")

    found = Suppression.objects.get(workspace=workspace)
    assert found.reason == Suppression.Reason.SOFT_BOUNCES
    assert "3 soft bounces in 14 days" in found.source
    assert "mailbox full" in found.source
    assert Contact.objects.get(pk=contact.pk).status == Contact.Status.ACTIVE


def test_soft_bounces_older_than_the_window_or_of_another_workspace_do_not_count(settings):
    settings.FEEDBACK_SOFT_BOUNCE_LIMIT, settings.FEEDBACK_SOFT_BOUNCE_DAYS = 2, 14
    workspace = WorkspaceFactory()
    old = make_delivery(workspace=workspace, contact=False)
    _bounce(old, "soft", occurred_at=timezone.now() - dt.timedelta(days=15))
    elsewhere = make_delivery(contact=False)  # same address, another workspace
    _bounce(elsewhere, "soft")
    assert suppressions(workspace) == {}

    _bounce(make_delivery(campaign=make_campaign(workspace), contact=False), "soft")

    assert suppressions(workspace) == {}
    assert suppressions(elsewhere.workspace) == {}


def test_block_leaves_the_contact_alone_and_counts_against_the_from_domain():
    since = timezone.now() - dt.timedelta(hours=1)
    delivery = make_delivery()
    other = make_delivery(
        campaign=make_campaign(delivery.workspace, from_email="Shop <news@Other.Example>"),
        address="second@mail.test",
    )
    _bounce(delivery, "block", diagnostic="550 5.7.1 listed at zen.spamhaus.org")
    _bounce(make_delivery(campaign=delivery.campaign, address="x@mail.test"), "block")
    _bounce(other, "block")
    deferral_record(
        delivery=make_delivery(campaign=delivery.campaign, address="y@mail.test"),
        bounce_class="block",
        diagnostic="421 4.7.0 rate limited",
        source=INBOUND,
    )

    delivery.refresh_from_db()
    assert delivery.state == State.BOUNCED
    assert delivery.bounce_class == "block"
    contact = Contact.objects.get(pk=delivery.contact_id)
    assert contact.status == Contact.Status.ACTIVE
    assert Subscription.objects.filter(contact=contact, status="subscribed").count() == 2
    assert suppressions(delivery.workspace) == {}
    assert feedback_block_counts(since=since) == {DOMAIN: 3, "other.example": 1}
    assert feedback_block_counts(since=timezone.now() + dt.timedelta(seconds=1)) == {}


def test_unknown_bounce_is_recorded_only():
    delivery = make_delivery()
    event = _bounce(delivery, "unknown", diagnostic="")
    assert event.bounce_class == "unknown"
    delivery.refresh_from_db()
    assert delivery.state == State.BOUNCED
    assert delivery.bounce_class == "unknown"
    assert suppressions(delivery.workspace) == {}
    assert Contact.objects.get(pk=delivery.contact_id).status == Contact.Status.ACTIVE


def test_the_same_event_is_recorded_and_acted_on_once():
    delivery = make_delivery()
    first = _bounce(delivery, "hard", event_id="evt-1", source="anymail:postmark")
    again = _bounce(delivery, "hard", event_id="evt-1", source="anymail:postmark")
    other_source = _bounce(delivery, "hard", event_id="evt-1", source="anymail:mailgun")
    assert first is not None
    assert again is None
    assert other_source is not None
    assert FeedbackEvent.objects.filter(source="anymail:postmark").count() == 1
    assert Suppression.objects.filter(workspace=delivery.workspace).count() == 1


def test_a_bounce_after_an_unsubscribe_keeps_the_contact_unsubscribed():
    delivery = make_delivery()
    Contact.objects.filter(pk=delivery.contact_id).update(status=Contact.Status.UNSUBSCRIBED)
    _bounce(delivery, "hard")
    assert Contact.objects.get(pk=delivery.contact_id).status == Contact.Status.UNSUBSCRIBED


# --- complaints and unsubscribes --------------------------------------------------------------


def test_complaint_unsubscribes_everywhere_suppresses_and_marks_the_delivery():
    delivery = make_delivery()
    event = complaint_record(delivery=delivery, feedback_type="Abuse", source=INBOUND)

    assert event.kind == FeedbackEvent.Kind.COMPLAINT
    assert event.feedback_type == "abuse"
    delivery.refresh_from_db()
    assert delivery.complained_at is not None
    assert delivery.state == State.SENT
    contact = Contact.objects.get(pk=delivery.contact_id)
    assert contact.status == Contact.Status.COMPLAINED
    assert set(Subscription.objects.filter(contact=contact).values_list("status", flat=True)) == {
        "unsubscribed"
    }
    assert contact.consent_records.filter(campaign_id=delivery.campaign_id).count() == 2
    assert suppressions(delivery.workspace) == {"reader@mail.test": "complaint"}


def test_a_redelivered_complaint_is_acted_on_once():
    delivery = make_delivery()
    assert complaint_record(delivery=delivery, source="anymail:x", event_id="c1") is not None
    first_at = Delivery.objects.get(pk=delivery.pk).complained_at
    assert complaint_record(delivery=delivery, source="anymail:x", event_id="c1") is None
    assert FeedbackEvent.objects.filter(kind="complaint").count() == 1
    assert Delivery.objects.get(pk=delivery.pk).complained_at == first_at


def test_complaint_about_a_deleted_contact_still_suppresses_the_address():
    delivery = make_delivery()
    Contact.objects.filter(pk=delivery.contact_id).delete()
    delivery.refresh_from_db()
    assert delivery.contact_id is None
    complaint_record(delivery=delivery, source=INBOUND)
    assert suppressions(delivery.workspace) == {"reader@mail.test": "complaint"}


def test_unsubscribe_by_mail_leaves_every_list_like_one_click():
    delivery = make_delivery()
    unsubscribe_record(delivery=delivery, consent_source="By mail", source=INBOUND)
    contact = Contact.objects.get(pk=delivery.contact_id)
    assert not Subscription.objects.filter(contact=contact, status="subscribed").exists()
    assert suppressions(delivery.workspace) == {"reader@mail.test": "unsubscribed"}
    assert set(contact.consent_records.values_list("source", flat=True)) == {"By mail"}


# --- rates ----------------------------------------------------------------------------------


def test_feedback_rates_count_a_workspaces_sends_bounces_and_complaints():
    since = timezone.now() - dt.timedelta(hours=1)
    workspace = WorkspaceFactory()
    campaign = make_campaign(workspace)
    sent = [make_delivery(campaign=campaign, address=f"r{i}@mail.test") for i in range(6)]
    _bounce(sent[0], "hard")
    _bounce(sent[1], "block")
    complaint_record(delivery=sent[2], source=INBOUND)
    # Refused during the SMTP session: bounced with no later report.
    make_delivery(campaign=campaign, address="sync@mail.test", state=State.BOUNCED)
    Delivery.objects.filter(address="sync@mail.test").update(bounce_class="soft")
    make_delivery(address="elsewhere@mail.test")  # another workspace

    rates = feedback_rates(workspace=workspace, since=since)

    assert rates.sent == 7
    assert rates.bounces == {"hard": 1, "soft": 1, "block": 1, "unknown": 0}
    assert rates.complaints == 1
    assert rates.bounce_rate == pytest.approx(3 / 7)
    assert rates.complaint_rate == pytest.approx(1 / 7)
    later = feedback_rates(workspace=workspace, since=timezone.now() + dt.timedelta(seconds=1))
    assert (later.sent, later.bounced, later.complaints) == (0, 0, 0)


# --- ESP classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "text", "expected"),
    [
        ("invalid", "", "hard"),
        ("blocked", "", "block"),
        ("spam", "", "block"),
        ("bounced", "", "unknown"),
        ("bounced", "550 5.1.1 The email account that you tried to reach does not exist", "hard"),
        ("bounced", "552 5.2.2 mailbox full", "soft"),
        (
            "other",
            "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
            "block",
        ),
        (None, "", "unknown"),
    ],
)
def test_esp_bounce_class_reads_the_reason_then_the_words(reason, text, expected):
    assert esp_bounce_class(reject_reason=reason, text=text)[0] == expected
