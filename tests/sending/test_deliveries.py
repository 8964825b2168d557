"""The exactly-once core: snapshot, claims under a lease, compare-and-set outcomes, sweep."""

import datetime as dt
import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.errors import ApplicationError
from campaigns.models import AbTest, Campaign, Variant
from contacts.models import Contact, Subscription, Suppression
from contacts.suppressions import address_hash
from sending.models import Delivery, DeliveryAttempt
from sending.services.deliveries import (
    Outcome,
    deliveries_claim,
    deliveries_mark_in_flight,
    deliveries_release,
    delivery_record,
    leases_sweep,
    send_start,
)
from tests.factories import ContactFactory, ContactListFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

State = Delivery.State


def _campaign(workspace, contact_list, **fields) -> Campaign:
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Launch",
        subject="Hi",
        html="<p>Hi</p>",
        status=Campaign.Status.SCHEDULED,
        **fields,
    )
    campaign.include_lists.add(contact_list)
    return campaign


def _subscribe(workspace, contact_list, contacts) -> None:
    Subscription.objects.bulk_create(
        Subscription(workspace=workspace, contact=contact, contact_list=contact_list)
        for contact in contacts
    )


@pytest.fixture
def audience(db):
    workspace = WorkspaceFactory()
    contact_list = ContactListFactory(workspace=workspace)
    contacts = [ContactFactory(workspace=workspace, email=f"p{i}@mail.test") for i in range(30)]
    _subscribe(workspace, contact_list, contacts)
    return workspace, contact_list, contacts


def test_snapshot_makes_one_delivery_per_sendable_contact_and_counts_exclusions(audience):
    workspace, contact_list, contacts = audience
    contacts[0].status = Contact.Status.UNSUBSCRIBED
    contacts[0].save()
    contacts[1].status = Contact.Status.BOUNCED
    contacts[1].save()
    Suppression.objects.create(
        workspace=workspace, address_hash=address_hash(contacts[2].email), reason="manual"
    )
    Suppression.objects.create(
        workspace=None, address_hash=address_hash(contacts[3].email.upper()), reason="complaint"
    )
    other = WorkspaceFactory()
    Suppression.objects.create(
        workspace=other, address_hash=address_hash(contacts[4].email), reason="manual"
    )
    campaign = _campaign(workspace, contact_list)

    send = send_start(campaign=campaign)

    addresses = set(Delivery.objects.filter(campaign=campaign).values_list("address", flat=True))
    assert addresses == {contact.email for contact in contacts[2:]} - {
        contacts[2].email,
        contacts[3].email,
    }
    assert (send.audience_total, send.excluded_inactive, send.excluded_suppressed) == (30, 2, 2)
    assert send.deliveries_total == 26
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING


def test_starting_twice_keeps_one_snapshot(audience):
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    first = send_start(campaign=campaign)
    second = send_start(campaign=campaign)
    assert first.pk == second.pk
    assert Delivery.objects.filter(campaign=campaign).count() == 30


def test_a_sent_campaign_cannot_start(audience):
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)
    campaign.refresh_from_db()
    with pytest.raises(ApplicationError):
        send_start(campaign=campaign)


def test_ab_test_releases_the_test_share_and_holds_the_rest(audience):
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    AbTest.objects.create(workspace=workspace, campaign=campaign, test_share_percent=20)
    a = Variant.objects.create(workspace=workspace, campaign=campaign, label="A", subject="One")
    b = Variant.objects.create(workspace=workspace, campaign=campaign, label="B", subject="Two")

    send_start(campaign=campaign)

    deliveries = Delivery.objects.filter(campaign=campaign)
    queued = deliveries.filter(state=State.QUEUED)
    assert queued.count() == 6
    assert queued.filter(variant=a).count() == 3
    assert queued.filter(variant=b).count() == 3
    assert deliveries.filter(state=State.HOLDING, variant__isnull=True).count() == 24


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_delivery(audience):
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    claimed: list[list[int]] = []
    barrier = threading.Barrier(3)

    def worker():
        barrier.wait()
        ids = []
        while claim := deliveries_claim(campaign_id=campaign.pk, limit=4):
            ids += [delivery.pk for delivery in claim.deliveries]
        claimed.append(ids)
        connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [pk for ids in claimed for pk in ids]
    assert len(every) == len(set(every)) == 30


def test_paused_campaigns_are_not_claimed(audience):
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send = send_start(campaign=campaign)
    send.is_paused = True
    send.save()
    assert deliveries_claim(campaign_id=campaign.pk, limit=10) is None


def test_an_address_suppressed_after_the_snapshot_is_skipped_at_claim(audience):
    workspace, contact_list, contacts = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    Suppression.objects.create(
        workspace=workspace, address_hash=address_hash(contacts[0].email), reason="unsubscribed"
    )
    Contact.objects.filter(pk=contacts[1].pk).update(status=Contact.Status.UNSUBSCRIBED)

    claim = deliveries_claim(campaign_id=campaign.pk, limit=100)

    sent_to = {delivery.address for delivery in claim.deliveries}
    assert contacts[0].email not in sent_to
    assert contacts[1].email not in sent_to
    skipped = Delivery.objects.filter(campaign=campaign, state=State.SKIPPED)
    assert set(skipped.values_list("address", flat=True)) == {contacts[0].email, contacts[1].email}


def _sent(transport="smtp") -> Outcome:
    return Outcome(state=State.SENT, transport=transport, smtp_code=250, response="2.0.0 Ok")


def test_outcome_and_attempt_are_recorded_together_for_the_lease_holder(audience):
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    claim = deliveries_claim(campaign_id=campaign.pk, limit=1)
    delivery = claim.deliveries[0]
    assert deliveries_mark_in_flight(delivery_ids=[delivery.pk], token=claim.token) == {delivery.pk}
    delivery.refresh_from_db()

    assert delivery_record(delivery=delivery, token=claim.token, outcome=_sent())

    delivery.refresh_from_db()
    assert delivery.state == State.SENT
    assert delivery.sent_at
    assert delivery.lease_token is None
    attempt = DeliveryAttempt.objects.get(delivery=delivery)
    assert (attempt.outcome, attempt.smtp_code, attempt.transport) == ("sent", 250, "smtp")


def test_a_frozen_worker_past_its_lease_can_neither_send_nor_record(audience):
    """Worker A claims, freezes past its lease; the sweep requeues; worker B claims the rows.
    When A wakes, marking in-flight and recording both change nothing."""
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    frozen = deliveries_claim(campaign_id=campaign.pk, limit=5)
    Delivery.objects.filter(lease_token=frozen.token).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert leases_sweep() == {"requeued": 5, "unknown": 0}
    fresh = deliveries_claim(campaign_id=campaign.pk, limit=5)
    assert {d.pk for d in fresh.deliveries} == {d.pk for d in frozen.deliveries}

    ids = [delivery.pk for delivery in frozen.deliveries]
    assert deliveries_mark_in_flight(delivery_ids=ids, token=frozen.token) == set()
    assert not delivery_record(delivery=frozen.deliveries[0], token=frozen.token, outcome=_sent())
    assert not DeliveryAttempt.objects.exists()
    assert Delivery.objects.filter(pk__in=ids, lease_token=fresh.token).count() == 5


def test_expired_in_flight_rows_become_unknown_never_requeued(audience, settings):
    settings.DELIVERY_RETRY_UNKNOWN = False
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    claim = deliveries_claim(campaign_id=campaign.pk, limit=3)
    ids = [delivery.pk for delivery in claim.deliveries]
    deliveries_mark_in_flight(delivery_ids=ids[:2], token=claim.token)
    Delivery.objects.filter(lease_token=claim.token).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )

    assert leases_sweep() == {"requeued": 1, "unknown": 2}

    states = dict(Delivery.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert states == {ids[0]: "unknown", ids[1]: "unknown", ids[2]: "queued"}


def test_expired_in_flight_rows_are_retried_when_configured(audience, settings):
    settings.DELIVERY_RETRY_UNKNOWN = True
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    claim = deliveries_claim(campaign_id=campaign.pk, limit=1)
    deliveries_mark_in_flight(delivery_ids=[claim.deliveries[0].pk], token=claim.token)
    Delivery.objects.filter(lease_token=claim.token).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert leases_sweep() == {"requeued": 0, "unknown": 1}
    assert Delivery.objects.get(pk=claim.deliveries[0].pk).state == State.QUEUED


def test_deferred_deliveries_back_off_then_are_claimed_again(audience, settings):
    settings.DELIVERY_FIRST_RETRY_SECONDS = 60
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    claim = deliveries_claim(campaign_id=campaign.pk, limit=1)
    delivery = claim.deliveries[0]
    deliveries_mark_in_flight(delivery_ids=[delivery.pk], token=claim.token)
    delivery.refresh_from_db()
    deferred = Outcome(state=State.DEFERRED, transport="smtp", smtp_code=451, response="Later")
    assert delivery_record(delivery=delivery, token=claim.token, outcome=deferred)
    delivery.refresh_from_db()
    wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert delivery.state == State.DEFERRED
    assert 40 < wait < 80

    others = deliveries_claim(campaign_id=campaign.pk, limit=100)
    assert delivery.pk not in {d.pk for d in others.deliveries}
    deliveries_release(delivery_ids=[d.pk for d in others.deliveries], token=others.token)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    again = deliveries_claim(campaign_id=campaign.pk, limit=100)
    assert delivery.pk in {d.pk for d in again.deliveries}


def test_a_deferral_past_the_lifetime_fails_as_a_soft_bounce(audience, settings):
    settings.DELIVERY_MAX_LIFETIME_SECONDS = 3600
    workspace, contact_list, _ = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    Delivery.objects.filter(campaign=campaign).update(
        created_at=timezone.now() - dt.timedelta(hours=2)
    )
    claim = deliveries_claim(campaign_id=campaign.pk, limit=1)
    delivery = claim.deliveries[0]
    deliveries_mark_in_flight(delivery_ids=[delivery.pk], token=claim.token)
    delivery.refresh_from_db()
    deferred = Outcome(state=State.DEFERRED, transport="smtp", smtp_code=421, response="Busy")
    delivery_record(delivery=delivery, token=claim.token, outcome=deferred)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.bounce_class) == (State.FAILED, "soft")


def test_snapshot_queries_do_not_grow_with_the_audience(audience):
    workspace, contact_list, contacts = audience
    small = _campaign(workspace, contact_list)
    with CaptureQueriesContext(connection) as small_queries:
        send_start(campaign=small)
    bigger_list = ContactListFactory(workspace=workspace)
    more = [ContactFactory(workspace=workspace, email=f"q{i}@mail.test") for i in range(60)]
    _subscribe(workspace, bigger_list, contacts + more)
    big = _campaign(workspace, bigger_list)
    with CaptureQueriesContext(connection) as big_queries:
        send_start(campaign=big)
    assert Delivery.objects.filter(campaign=big).count() == 90
    assert len(big_queries) == len(small_queries)


def test_gdpr_export_and_erasure_cover_deliveries_and_replies(audience):
    from compliance.gdpr import gdpr_collect, gdpr_erase

    workspace, contact_list, contacts = audience
    campaign = _campaign(workspace, contact_list)
    send_start(campaign=campaign)
    person = contacts[5].email
    delivery = Delivery.objects.get(campaign=campaign, address=person)
    claim = deliveries_claim(campaign_id=campaign.pk, limit=100)
    deliveries_mark_in_flight(delivery_ids=[delivery.pk], token=claim.token)
    delivery.refresh_from_db()
    bounce = Outcome(
        state=State.BOUNCED, transport="smtp", smtp_code=550, response=f"5.1.1 <{person}> unknown"
    )
    delivery_record(delivery=delivery, token=claim.token, outcome=bounce)

    exported = gdpr_collect(workspace=workspace, email=person)
    assert [row["address"] for row in exported["sending.deliveries"]] == [person]
    assert person in exported["sending.delivery_attempts"][0]["response"]

    gdpr_erase(workspace=workspace, email=person, acting_user=None)

    delivery.refresh_from_db()
    assert person not in delivery.address
    assert delivery.state == State.BOUNCED  # the campaign's numbers stay right
    assert not DeliveryAttempt.objects.filter(response__icontains=person).exists()
    assert not Delivery.objects.filter(address__iexact=person).exists()
