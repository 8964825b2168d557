"""The contacts pages: table, contact detail, lists, fields, bulk actions."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEntry, Role
from contacts.models import ConsentRecord, Contact, ContactList, Field, Subscription
from contacts.selectors import ContactFilters, contact_page
from contacts.services.suppressions import suppression_add
from tests.factories import (
    ContactFactory,
    ContactListFactory,
    FieldFactory,
    SubscriptionFactory,
    WorkspaceFactory,
)

pytestmark = pytest.mark.django_db


def _url(name, workspace, **kwargs):
    return reverse(f"contacts:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


@pytest.fixture
def workspace():
    return WorkspaceFactory()


@pytest.fixture
def editor(workspace, member_client):
    return member_client(workspace, Role.EDITOR)


# --- Table --------------------------------------------------------------------------------


def test_empty_workspace_shows_next_steps(workspace, editor):
    response = editor.get(_url("contact_list", workspace))
    assert response.status_code == 200
    body = response.content.decode()
    assert "No contacts yet" in body
    assert "Import a CSV" in body
    assert _url("contact_create", workspace) in body
    assert "Create a signup form" in body


def test_tabs_render_every_section(workspace, editor):
    ContactFactory(workspace=workspace)
    body = editor.get(_url("contact_list", workspace)).content.decode()
    for label in ("Contacts", "Lists", "Segments", "Fields", "Suppressions", "Imports", "Exports"):
        assert f">{label}<" in body
    assert _url("suppression_list", workspace) in body


def test_table_lists_only_this_workspace(workspace, editor):
    mine = ContactFactory(workspace=workspace, email="mine@example.com")
    ContactFactory(email="theirs@example.com")
    body = editor.get(_url("contact_list", workspace)).content.decode()
    assert mine.email in body
    assert "theirs@example.com" not in body


def test_search_matches_email_and_name(workspace, editor):
    ContactFactory(workspace=workspace, email="ada@example.com", first_name="Ada")
    ContactFactory(workspace=workspace, email="bob@example.com", first_name="Grace")
    ContactFactory(workspace=workspace, email="carl@example.com", first_name="Carl")
    by_email = editor.get(_url("contact_list", workspace), {"q": "ADA@"}).content.decode()
    assert "ada@example.com" in by_email
    assert "bob@example.com" not in by_email
    by_name = editor.get(_url("contact_list", workspace), {"q": "grace"}).content.decode()
    assert "bob@example.com" in by_name
    assert "carl@example.com" not in by_name


def test_filters_by_status_list_and_created_range(workspace):
    now = timezone.now()
    old = ContactFactory(workspace=workspace, created_at=now - dt.timedelta(days=40))
    new = ContactFactory(workspace=workspace)
    gone = ContactFactory(workspace=workspace, status=Contact.Status.UNSUBSCRIBED)
    news = ContactListFactory(workspace=workspace)
    SubscriptionFactory(contact=new, contact_list=news)
    SubscriptionFactory(contact=old, contact_list=news, status="unsubscribed")

    def emails(**filters):
        page = contact_page(workspace=workspace, filters=ContactFilters.from_dict(filters))
        return {contact.email for contact in page.contacts}

    assert emails(status="unsubscribed") == {gone.email}
    assert emails(list=str(news.pk)) == {new.email}
    since = (now - dt.timedelta(days=7)).date().isoformat()
    assert emails(created_from=since) == {new.email, gone.email}
    until = (now - dt.timedelta(days=30)).date().isoformat()
    assert emails(created_to=until) == {old.email}


def test_htmx_request_gets_only_the_table(workspace, editor):
    ContactFactory(workspace=workspace, email="one@example.com")
    response = editor.get(_url("contact_list", workspace), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="contacts-table">')
    assert "one@example.com" in body
    assert "<html" not in body


@pytest.mark.parametrize("sort", ["-created", "created", "email", "-email"])
def test_keyset_pages_cover_every_contact_once_in_order(workspace, sort):
    base = timezone.now()
    for n in range(23):
        # Some share a creation time: the id breaks ties.
        ContactFactory(
            workspace=workspace,
            email=f"{'B' if n % 2 else 'a'}person{n:02d}@example.com",
            created_at=base - dt.timedelta(minutes=n // 3),
        )
    filters = ContactFilters.from_dict({"sort": sort})
    seen, cursor = [], ""
    while True:
        page = contact_page(workspace=workspace, filters=filters, cursor=cursor, page_size=5)
        seen.extend(page.contacts)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert len(seen) == 23
    assert len({contact.pk for contact in seen}) == 23
    keys = {
        "-created": lambda c: (c.created_at, c.pk),
        "created": lambda c: (c.created_at, c.pk),
        "email": lambda c: c.email.lower(),
        "-email": lambda c: c.email.lower(),
    }[sort]
    assert seen == sorted(seen, key=keys, reverse=sort.startswith("-"))


def test_next_page_link_follows_the_cursor(workspace, editor):
    for n in range(55):
        ContactFactory(workspace=workspace, email=f"p{n:02d}@example.com")
    first = editor.get(_url("contact_list", workspace), {"sort": "email"})
    assert first.context["page"].next_cursor
    assert "p49@example.com" in first.content.decode()
    assert "p50@example.com" not in first.content.decode()
    second = editor.get(
        _url("contact_list", workspace),
        {"sort": "email", "after": first.context["page"].next_cursor},
    )
    assert [c.email for c in second.context["page"].contacts] == [
        f"p{n}@example.com" for n in range(50, 55)
    ]


def _subscribed_contacts(workspace, contact_list, count, start):
    contacts = Contact.objects.bulk_create(
        [
            Contact(workspace=workspace, email=f"many{n}@example.com")
            for n in range(start, start + count)
        ]
    )
    Subscription.objects.bulk_create(
        [Subscription(workspace=workspace, contact=c, contact_list=contact_list) for c in contacts]
    )


def test_list_page_query_count_does_not_grow_with_rows(
    workspace, editor, django_assert_num_queries
):
    """Session, user, membership, switcher, lists, one page of rows, one capped count."""
    news = ContactListFactory(workspace=workspace)
    _subscribed_contacts(workspace, news, 60, 0)
    url = _url("contact_list", workspace)
    editor.get(url)  # the member's last-used stamp is written once
    with django_assert_num_queries(7):
        editor.get(url, {"list": news.pk})
    _subscribed_contacts(workspace, news, 600, 60)
    with django_assert_num_queries(7):
        response = editor.get(url, {"list": news.pk, "q": "many"})
    assert len(response.context["page"].contacts) == 50
    assert response.context["page"].matching_count == 660


# --- Adding and editing -------------------------------------------------------------------


def test_add_contact_by_hand_with_typed_attributes_and_list(workspace, editor):
    FieldFactory(workspace=workspace, key="seats", label="Seats", type="number")
    FieldFactory(workspace=workspace, key="vip", label="VIP", type="boolean")
    news = ContactListFactory(workspace=workspace, name="News")
    response = editor.post(
        _url("contact_create", workspace),
        {
            "email": "Ada@Example.COM",
            "first_name": "Ada",
            "attr_seats": "12",
            "attr_vip": "yes",
            "lists": [str(news.pk)],
        },
    )
    contact = Contact.objects.get(workspace=workspace)
    assert response.status_code == 302
    assert contact.email == "Ada@example.com"
    assert contact.attributes == {"seats": 12, "vip": True}
    assert Subscription.objects.get(contact=contact).status == "subscribed"
    record = ConsentRecord.objects.get(contact=contact)
    assert (record.method, record.action, record.actor) == ("admin", "granted", editor.user)


def test_add_contact_refuses_invalid_attribute_and_duplicate(workspace, editor):
    FieldFactory(workspace=workspace, key="seats", label="Seats", type="number")
    ContactFactory(workspace=workspace, email="taken@example.com")
    bad_value = editor.post(
        _url("contact_create", workspace), {"email": "new@example.com", "attr_seats": "many"}
    )
    assert bad_value.status_code == 200
    assert "is not a number" in bad_value.content.decode()
    duplicate = editor.post(_url("contact_create", workspace), {"email": "TAKEN@example.com"})
    assert "already a contact" in duplicate.content.decode()
    assert Contact.objects.filter(workspace=workspace).count() == 1


def test_edit_contact_parses_typed_attributes(workspace, editor):
    FieldFactory(workspace=workspace, key="renews", label="Renews", type="date")
    FieldFactory(
        workspace=workspace, key="plan", label="Plan", type="choice", choices=["free", "pro"]
    )
    contact = ContactFactory(workspace=workspace, attributes={"legacy": "kept"})
    response = editor.post(
        _url("contact_edit", workspace, contact_id=contact.pk),
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "attr_renews": "2025-03-01",
            "attr_plan": "pro",
        },
    )
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.first_name == "Grace"
    assert contact.attributes == {"legacy": "kept", "renews": "2025-03-01", "plan": "pro"}
    refused = editor.post(
        _url("contact_edit", workspace, contact_id=contact.pk),
        {"first_name": "Grace", "attr_plan": "enterprise"},
    )
    assert refused.status_code == 200
    contact.refresh_from_db()
    assert contact.attributes["plan"] == "pro"


def test_viewer_cannot_add_contacts(workspace, member_client):
    viewer = member_client(workspace, Role.VIEWER)
    assert (
        viewer.post(_url("contact_create", workspace), {"email": "x@example.com"}).status_code
        == 403
    )
    assert not Contact.objects.filter(workspace=workspace).exists()


# --- Detail -------------------------------------------------------------------------------


def test_detail_shows_profile_subscriptions_consent_and_timeline(workspace, editor):
    contact = ContactFactory(workspace=workspace, first_name="Ada", attributes={"plan": "pro"})
    FieldFactory(workspace=workspace, key="plan", label="Plan")
    news = ContactListFactory(workspace=workspace, name="Weekly news")
    editor.post(_url("contact_subscribe", workspace, contact_id=contact.pk), {"list": news.pk})
    body = editor.get(_url("contact_detail", workspace, contact_id=contact.pk)).content.decode()
    assert "Weekly news" in body
    assert "Subscribed" in body
    assert "Plan" in body
    assert "pro" in body
    assert "Consent history" in body
    assert "By a team member" in body
    assert "Contact created" in body
    assert "Consent granted: Weekly news" in body


def test_detail_of_other_workspace_contact_is_404(workspace, editor):
    foreign = ContactFactory()
    assert editor.get(_url("contact_detail", workspace, contact_id=foreign.pk)).status_code == 404


def test_subscribe_and_unsubscribe_from_detail_record_consent(workspace, editor):
    contact = ContactFactory(workspace=workspace)
    news = ContactListFactory(workspace=workspace)
    response = editor.post(
        _url("contact_subscribe", workspace, contact_id=contact.pk),
        {"list": news.pk},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert 'id="subscriptions-panel"' in response.content.decode()
    editor.post(_url("contact_unsubscribe", workspace, contact_id=contact.pk, list_id=news.pk))
    subscription = Subscription.objects.get(contact=contact, contact_list=news)
    assert subscription.status == "unsubscribed"
    actions = list(
        ConsentRecord.objects.filter(contact=contact).order_by("id").values_list("action", "method")
    )
    assert actions == [("granted", "admin"), ("withdrawn", "admin")]


def test_subscribe_refuses_a_suppressed_contact(workspace, editor):
    contact = ContactFactory(workspace=workspace, email="blocked@example.com")
    suppression_add(workspace=None, email=contact.email, reason="complaint", acting_user=None)
    news = ContactListFactory(workspace=workspace)
    editor.post(_url("contact_subscribe", workspace, contact_id=contact.pk), {"list": news.pk})
    assert not Subscription.objects.filter(contact=contact).exists()


def test_delete_contact_keeps_consent_records_and_audits(workspace, editor):
    contact = SubscriptionFactory(contact=ContactFactory(workspace=workspace)).contact
    ConsentRecord.objects.create(
        workspace=workspace, contact=contact, action="granted", method="admin", email=contact.email
    )
    response = editor.post(_url("contact_delete", workspace, contact_id=contact.pk))
    assert response.status_code == 302
    assert not Contact.objects.filter(pk=contact.pk).exists()
    assert ConsentRecord.objects.get(email=contact.email).contact_id is None
    entry = AuditEntry.objects.get(verb="contacts.deleted")
    assert entry.details == {"count": 1}


# --- Lists --------------------------------------------------------------------------------


def test_list_index_counts_by_status_in_one_query(workspace, editor, django_assert_num_queries):
    news, promo = ContactListFactory(workspace=workspace), ContactListFactory(workspace=workspace)
    for status, count in (("subscribed", 3), ("pending", 2), ("unsubscribed", 1)):
        for _ in range(count):
            SubscriptionFactory(
                contact=ContactFactory(workspace=workspace), contact_list=news, status=status
            )
    SubscriptionFactory(contact=ContactFactory(workspace=workspace), contact_list=promo)
    editor.get(_url("list_index", workspace))
    with django_assert_num_queries(5):
        response = editor.get(_url("list_index", workspace))
    counts = {
        cl.name: (cl.subscribed_count, cl.pending_count, cl.unsubscribed_count)
        for cl in response.context["lists"]
    }
    assert counts == {news.name: (3, 2, 1), promo.name: (1, 0, 0)}


def test_list_create_edit_delete(workspace, editor):
    editor.post(_url("list_create", workspace), {"name": "Product news", "opt_in": "double"})
    contact_list = ContactList.objects.get(workspace=workspace)
    duplicate = editor.post(
        _url("list_create", workspace), {"name": "Product news", "opt_in": "single"}
    )
    assert "already exists" in duplicate.content.decode()
    editor.post(
        _url("list_edit", workspace, list_id=contact_list.pk),
        {"name": "Launches", "description": "New things", "opt_in": "single"},
    )
    contact_list.refresh_from_db()
    assert (contact_list.name, contact_list.opt_in) == ("Launches", "single")
    editor.post(_url("list_delete", workspace, list_id=contact_list.pk))
    assert not ContactList.objects.filter(pk=contact_list.pk).exists()
    verbs = set(AuditEntry.objects.values_list("verb", flat=True))
    assert {"list.created", "list.updated", "list.deleted"} <= verbs


def test_empty_lists_page_offers_to_create_one(workspace, editor):
    body = editor.get(_url("list_index", workspace)).content.decode()
    assert "No lists yet" in body
    assert _url("list_create", workspace) in body


# --- Fields -------------------------------------------------------------------------------


def test_field_create_validates_key_as_slug(workspace, editor):
    bad = editor.post(
        _url("field_create", workspace), {"key": "Plan Name!", "label": "Plan", "type": "text"}
    )
    assert bad.status_code == 200
    assert "lower-case letters" in bad.content.decode()
    reserved = editor.post(
        _url("field_create", workspace), {"key": "email", "label": "E", "type": "text"}
    )
    assert "built-in column" in reserved.content.decode()
    editor.post(
        _url("field_create", workspace),
        {"key": "plan", "label": "Plan", "type": "choice", "choices": "free\npro\n"},
    )
    field = Field.objects.get(workspace=workspace)
    assert (field.key, field.type, field.choices) == ("plan", "choice", ["free", "pro"])


def test_choice_field_needs_choices(workspace, editor):
    response = editor.post(
        _url("field_create", workspace), {"key": "plan", "label": "Plan", "type": "choice"}
    )
    assert "at least one choice" in response.content.decode()
    assert not Field.objects.filter(workspace=workspace).exists()


def test_type_change_refused_when_stored_values_do_not_fit(workspace, editor):
    field = FieldFactory(workspace=workspace, key="seats", label="Seats", type="text")
    ContactFactory(workspace=workspace, attributes={"seats": "a dozen"})
    response = editor.post(
        _url("field_edit", workspace, field_id=field.pk), {"label": "Seats", "type": "number"}
    )
    assert "1 contacts hold Seats values" in response.content.decode()
    field.refresh_from_db()
    assert field.type == "text"


def test_type_change_allowed_when_values_fit(workspace, editor):
    field = FieldFactory(workspace=workspace, key="seats", label="Seats", type="text")
    ContactFactory(workspace=workspace, attributes={"seats": 12})
    ContactFactory(attributes={"seats": "not mine"})  # another workspace: irrelevant
    response = editor.post(
        _url("field_edit", workspace, field_id=field.pk), {"label": "Seat count", "type": "number"}
    )
    assert response.status_code == 302
    field.refresh_from_db()
    assert (field.label, field.type) == ("Seat count", "number")


def test_field_delete_clears_values(workspace, editor):
    field = FieldFactory(workspace=workspace, key="city", label="City")
    contact = ContactFactory(workspace=workspace, attributes={"city": "Oslo", "other": 1})
    foreign = ContactFactory(attributes={"city": "Rome"})
    editor.post(_url("field_delete", workspace, field_id=field.pk))
    contact.refresh_from_db()
    foreign.refresh_from_db()
    assert contact.attributes == {"other": 1}
    assert foreign.attributes == {"city": "Rome"}
    assert not Field.objects.filter(pk=field.pk).exists()


# --- Bulk actions -------------------------------------------------------------------------


def _bulk(client, workspace, **data):
    return client.post(_url("contact_bulk", workspace), data)


def test_bulk_add_selected_to_list_skips_unsubscribed_and_suppressed(workspace, editor):
    news = ContactListFactory(workspace=workspace)
    picked = ContactFactory(workspace=workspace)
    left = ContactFactory(workspace=workspace)
    SubscriptionFactory(contact=left, contact_list=news, status="unsubscribed")
    bounced = ContactFactory(workspace=workspace, status="bounced")
    blocked = ContactFactory(workspace=workspace, email="blocked@example.com")
    suppression_add(workspace=workspace, email=blocked.email, reason="manual", acting_user=None)
    not_picked = ContactFactory(workspace=workspace)
    foreign = ContactFactory()
    _bulk(
        editor,
        workspace,
        action="add_to_list",
        target_list=news.pk,
        ids=[picked.pk, left.pk, bounced.pk, blocked.pk, foreign.pk],
    )
    statuses = dict(Subscription.objects.filter(contact_list=news).values_list("contact", "status"))
    assert statuses == {picked.pk: "subscribed", left.pk: "unsubscribed"}
    assert not Subscription.objects.filter(contact__in=[not_picked, foreign]).exists()
    record = ConsentRecord.objects.get(contact=picked)
    assert (record.action, record.method, record.contact_list) == ("granted", "admin", news)


def test_bulk_add_all_matching_filter(workspace, editor):
    news = ContactListFactory(workspace=workspace)
    for n in range(7):
        ContactFactory(workspace=workspace, email=f"team{n}@corp.example")
    ContactFactory(workspace=workspace, email="outsider@else.example")
    _bulk(editor, workspace, action="add_to_list", target_list=news.pk, scope="all", q="@corp.")
    assert Subscription.objects.filter(contact_list=news).count() == 7
    assert AuditEntry.objects.get(verb="contacts.added_to_list").details == {"count": 7}


def test_bulk_unsubscribe_records_withdrawn_consent(workspace, editor):
    news = ContactListFactory(workspace=workspace)
    subs = [
        SubscriptionFactory(contact=ContactFactory(workspace=workspace), contact_list=news)
        for _ in range(3)
    ]
    _bulk(editor, workspace, action="unsubscribe", target_list=news.pk, scope="all")
    assert set(Subscription.objects.filter(contact_list=news).values_list("status", flat=True)) == {
        "unsubscribed"
    }
    assert ConsentRecord.objects.filter(action="withdrawn", contact_list=news).count() == 3
    assert {r.contact_id for r in ConsentRecord.objects.all()} == {s.contact_id for s in subs}


def test_bulk_remove_from_list_keeps_unsubscriptions(workspace, editor):
    news = ContactListFactory(workspace=workspace)
    member = SubscriptionFactory(contact=ContactFactory(workspace=workspace), contact_list=news)
    left = SubscriptionFactory(
        contact=ContactFactory(workspace=workspace), contact_list=news, status="unsubscribed"
    )
    _bulk(
        editor,
        workspace,
        action="remove_from_list",
        target_list=news.pk,
        ids=[member.contact_id, left.contact_id],
    )
    assert list(Subscription.objects.filter(contact_list=news)) == [left]


def test_bulk_delete_whole_filter_audits_count(workspace, editor):
    for _ in range(4):
        ContactFactory(workspace=workspace, status="bounced")
    keep = ContactFactory(workspace=workspace)
    foreign = ContactFactory(status="bounced")
    _bulk(editor, workspace, action="delete", scope="all", status="bounced")
    assert list(Contact.objects.filter(workspace=workspace)) == [keep]
    assert Contact.objects.filter(pk=foreign.pk).exists()
    entry = AuditEntry.objects.get(verb="contacts.deleted")
    assert entry.details == {"count": 4}
    assert entry.actor == editor.user


def test_bulk_action_needs_a_list_and_a_selection(workspace, editor):
    contact = ContactFactory(workspace=workspace)
    response = _bulk(editor, workspace, action="add_to_list", ids=[contact.pk])
    assert response.status_code == 302
    assert not Subscription.objects.exists()
    _bulk(editor, workspace, action="delete")
    assert Contact.objects.filter(pk=contact.pk).exists()


def test_bulk_actions_run_a_bounded_number_of_queries(
    workspace, editor, django_assert_max_num_queries
):
    news = ContactListFactory(workspace=workspace)
    Contact.objects.bulk_create(
        [Contact(workspace=workspace, email=f"bulk{n}@example.com") for n in range(300)]
    )
    with django_assert_max_num_queries(30):
        _bulk(editor, workspace, action="add_to_list", target_list=news.pk, scope="all")
    with django_assert_max_num_queries(30):
        _bulk(editor, workspace, action="unsubscribe", target_list=news.pk, scope="all")
    assert ConsentRecord.objects.filter(contact_list=news).count() == 600
