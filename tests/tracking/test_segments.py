"""Segment conditions on one campaign's opens and clicks, registered by the tracking app,
select exactly the right contacts through the contacts app's compiler; "opened / clicked
any campaign" are the engagement conditions on Contact.last_opened_at / last_clicked_at."""

import datetime as dt
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import Campaign
from contacts.segments import services
from contacts.segments.compiler import (
    SegmentDefinitionError,
    definition_contacts,
    segment_contacts,
)
from contacts.segments.registry import segment_conditions
from sending.models import Delivery
from tests.factories import ContactFactory, WorkspaceFactory
from tracking.models import Event

pytestmark = pytest.mark.django_db

NOW = timezone.now()
DAY = dt.timedelta(days=1)


def rule(field: str, operator: str, value=None) -> dict:
    found = {"field": field, "operator": operator}
    if value is not None:
        found["value"] = value
    return found


def matching(workspace, *rules, op="and") -> set[str]:
    """Local parts of the addresses of the contacts that match."""
    contacts = definition_contacts(
        workspace=workspace, definition={"op": op, "rules": list(rules)}, now=NOW
    )
    return {email.split("@")[0] for email in contacts.values_list("email", flat=True)}


class World:
    """One workspace's campaigns and contacts, each contact with its own events."""

    def __init__(self) -> None:
        self.workspace = WorkspaceFactory()
        self.spring = Campaign.objects.create(
            workspace=self.workspace, name="Spring", status="sent"
        )
        self.summer = Campaign.objects.create(
            workspace=self.workspace, name="Summer", status="sending"
        )
        self.draft = Campaign.objects.create(workspace=self.workspace, name="Draft")
        self.contacts = {}

    def contact(self, name: str, *events: tuple[Campaign, str, dt.timedelta, str], **fields):
        """A contact, sent each campaign of its events, with those events (campaign, kind,
        how long ago, machine rule)."""
        contact = ContactFactory(workspace=self.workspace, email=f"{name}@example.org", **fields)
        self.contacts[name] = contact
        deliveries = {}
        for campaign, kind, ago, machine_rule in events:
            delivery = deliveries.get(campaign.pk)
            if delivery is None:
                delivery = deliveries[campaign.pk] = Delivery.objects.create(
                    workspace=self.workspace,
                    campaign=campaign,
                    contact=contact,
                    address=contact.email,
                    state=Delivery.State.SENT,
                    sent_at=NOW - 60 * DAY,
                )
            Event.objects.create(
                workspace=self.workspace,
                campaign=campaign,
                delivery=delivery,
                contact=contact,
                kind=kind,
                occurred_at=NOW - ago,
                url="https://shop.example/" if kind == "click" else "",
                machine_rule=machine_rule,
                event_key=uuid.uuid4(),
            )
        return contact


OPEN, CLICK = Event.Kind.OPEN, Event.Kind.CLICK


@pytest.fixture
def world() -> World:
    world = World()
    spring, summer = world.spring, world.summer
    world.contact("reader", (spring, OPEN, 2 * DAY, ""))
    world.contact("mpp", (spring, OPEN, 3 * DAY, "apple_mpp_network"))
    world.contact("lapsed", (spring, OPEN, 40 * DAY, ""), (spring, CLICK, 40 * DAY, ""))
    world.contact("clicker", (spring, OPEN, DAY, ""), (spring, CLICK, DAY, ""))
    world.contact("scanned", (spring, OPEN, DAY, "open_at_delivery"),
                  (spring, CLICK, DAY, "scanner_user_agent"))  # fmt: skip
    world.contact("summer", (summer, OPEN, DAY, ""), (summer, CLICK, DAY, ""))
    world.contact("silent")
    # The same campaign id's events in another workspace never count here.
    other = World()
    other.contact("reader", (other.spring, OPEN, DAY, ""))
    Event.objects.filter(workspace=other.workspace).update(campaign_id=spring.pk)
    return world


EVERYONE = {"reader", "mpp", "lapsed", "clicker", "scanned", "summer", "silent"}


def test_opened_campaign_counts_every_open_in_the_window_machine_ones_included(world):
    opened = rule("opened_campaign", "opened", [world.spring.pk, 30])
    assert matching(world.workspace, opened) == {"reader", "mpp", "clicker", "scanned"}
    assert matching(world.workspace, rule("opened_campaign", "opened", [world.spring.pk, 60])) == {
        "reader", "mpp", "clicker", "scanned", "lapsed"
    }  # fmt: skip
    assert matching(world.workspace, rule("opened_campaign", "opened", [world.summer.pk, 7])) == {
        "summer"
    }


def test_not_opened_is_the_rest_of_the_workspace(world):
    not_opened = rule("opened_campaign", "not_opened", [world.spring.pk, 30])
    assert matching(world.workspace, not_opened) == {"lapsed", "summer", "silent"}


def test_clicked_campaign_counts_human_clicks_only(world):
    clicked = rule("clicked_campaign", "clicked", [world.spring.pk, 30])
    assert matching(world.workspace, clicked) == {"clicker"}
    in_45_days = rule("clicked_campaign", "clicked", [world.spring.pk, 45])
    assert matching(world.workspace, in_45_days) == {"clicker", "lapsed"}
    not_clicked = rule("clicked_campaign", "not_clicked", [world.spring.pk, 30])
    assert matching(world.workspace, not_clicked) == EVERYONE - {"clicker"}


def test_conditions_combine_in_one_query(world):
    opened_not_clicked = (
        rule("opened_campaign", "opened", [world.spring.pk, 30]),
        rule("clicked_campaign", "not_clicked", [world.spring.pk, 30]),
    )
    contacts = definition_contacts(
        workspace=world.workspace,
        definition={"op": "and", "rules": list(opened_not_clicked)},
        now=NOW,
    )
    with CaptureQueriesContext(connection) as queries:
        found = {email.split("@")[0] for email in contacts.values_list("email", flat=True)}
    assert found == {"reader", "mpp", "scanned"}
    assert len(queries) == 1
    either = matching(
        world.workspace,
        rule("clicked_campaign", "clicked", [world.spring.pk, 30]),
        rule("clicked_campaign", "clicked", [world.summer.pk, 30]),
        op="or",
    )
    assert either == {"clicker", "summer"}


def test_a_saved_segment_selects_the_same_contacts(world):
    segment = services.segment_create(
        workspace=world.workspace,
        name="Spring openers",
        definition={
            "op": "and",
            "rules": [rule("opened_campaign", "opened", [world.spring.pk, "30"])],
        },
        acting_user=None,
    )
    assert segment.definition["rules"][0]["value"] == [world.spring.pk, 30]
    found = segment_contacts(segment=segment, now=NOW).values_list("email", flat=True)
    assert {email.split("@")[0] for email in found} == {"reader", "mpp", "clicker", "scanned"}


def test_only_the_workspaces_started_campaigns_can_be_chosen(world):
    conditions = segment_conditions.for_workspace(world.workspace)
    for key in ("opened_campaign", "clicked_campaign"):
        condition = conditions[key]
        assert condition.group == "Engagement"
        assert dict(condition.choices(world.workspace)) == {
            world.spring.pk: "Spring",
            world.summer.pk: "Summer",
        }
    stranger = Campaign.objects.create(workspace=WorkspaceFactory(), name="Theirs", status="sent")
    for campaign in (world.draft, stranger):
        with pytest.raises(SegmentDefinitionError, match="no such option"):
            matching(world.workspace, rule("opened_campaign", "opened", [campaign.pk, 30]))


def test_opened_or_clicked_any_campaign_reads_the_contacts_last_engagement():
    workspace = WorkspaceFactory()
    ContactFactory(workspace=workspace, email="fresh@example.org", last_opened_at=NOW - DAY,
                   last_clicked_at=NOW - DAY)  # fmt: skip
    ContactFactory(workspace=workspace, email="opener@example.org", last_opened_at=NOW - 5 * DAY)
    ContactFactory(workspace=workspace, email="stale@example.org", last_opened_at=NOW - 90 * DAY,
                   last_clicked_at=NOW - 90 * DAY)  # fmt: skip
    ContactFactory(workspace=workspace, email="never@example.org")
    opened = rule("last_opened_at", "in_last_days", 30)
    clicked = rule("last_clicked_at", "in_last_days", 30)
    assert matching(workspace, opened) == {"fresh", "opener"}
    assert matching(workspace, clicked) == {"fresh"}
    assert matching(workspace, rule("last_opened_at", "not_in_last_days", 30)) == {
        "stale", "never"
    }  # fmt: skip
