"""Public signup pages and the marketer's form pages, through Django's test client."""

import html
import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Role, Workspace
from contacts.models import ConsentRecord, Contact, SignupForm, Subscription
from contacts.services.suppressions import suppression_add
from contacts.tokens import confirmation_token_make
from tests.contacts.signup_factories import SignupFormFactory
from tests.factories import ContactFactory, ContactListFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

CUSTOMER_ORIGIN = "https://www.customer-site.example"


@pytest.fixture
def form():
    return SignupFormFactory()


def _page(form) -> str:
    return reverse("signup:signup_page", args=[form.public_id])


def _post(client, form, email, **extra):
    data = {"email": email, "consent": "yes", "first_name": "Ada", **extra}
    return client.post(
        _page(form),
        data,
        HTTP_ORIGIN=CUSTOMER_ORIGIN,
        HTTP_REFERER=f"{CUSTOMER_ORIGIN}/newsletter",
        HTTP_USER_AGENT="Mozilla/5.0 Test",
    )


def _url(name, workspace, **kwargs):
    return reverse(name, kwargs={"workspace_slug": workspace.slug, **kwargs})


# --- Public pages


def test_hosted_page_shows_the_form_branded_with_the_workspace_and_no_app_navigation(form):
    response = Client().get(_page(form))
    assert response.status_code == 200
    page = response.content.decode()
    assert form.workspace.name in page
    assert form.title in page
    assert form.intro in page
    assert form.consent_text in page
    assert 'name="website"' in page  # the honeypot
    assert 'class="sidenav"' not in page
    assert "Sign in" not in page
    assert "<script" not in page


def test_post_from_another_origin_without_csrf_token_is_accepted(form):
    client = Client(enforce_csrf_checks=True)
    response = _post(client, form, "reader@example.org")
    assert response.status_code == 302
    assert response["Location"] == reverse("signup:signup_thanks", args=[form.public_id])
    assert Subscription.objects.get().status == Subscription.Status.PENDING
    thanks = client.get(response["Location"])
    assert form.success_message in thanks.content.decode()


def test_the_same_response_for_new_known_subscribed_and_suppressed_addresses(
    form, smtp_sink, django_capture_on_commit_callbacks
):
    subscribed = ContactFactory(workspace=form.workspace, email="subscribed@example.org")
    SubscriptionFactory(contact=subscribed, contact_list=form.contact_list)
    ContactFactory(workspace=form.workspace, email="known@example.org")
    ContactFactory(workspace=form.workspace, email="unsub@example.org", status="unsubscribed")
    suppression_add(
        workspace=form.workspace, email="blocked@example.org", reason="manual", acting_user=None
    )
    responses = []
    for email in (
        "new@example.org",
        "known@example.org",
        "subscribed@example.org",
        "unsub@example.org",
        "blocked@example.org",
    ):
        with django_capture_on_commit_callbacks(execute=True):
            response = _post(Client(), form, email)
        thanks = Client().get(response["Location"])
        responses.append(
            (response.status_code, response["Location"], response.content, thanks.content)
        )
    assert len(set(responses)) == 1
    assert sorted(rcpt for _, [rcpt] in smtp_sink.envelopes) == [
        "known@example.org",
        "new@example.org",
    ]


def test_invalid_address_shows_the_hosted_form_with_the_error_and_the_values(form):
    response = _post(Client(), form, "not-an-address", first_name="Grace")
    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter a valid email address" in page
    assert 'value="not-an-address"' in page
    assert 'value="Grace"' in page
    assert 'aria-invalid="true"' in page
    assert 'value="yes" required checked' in page  # the tick given is kept
    assert not Contact.objects.exists()


def test_missing_consent_tick_is_shown_as_an_error(form):
    response = _post(Client(), form, "fine@example.org", consent="")
    assert response.status_code == 400
    assert "tick the box" in response.content.decode()
    assert not Contact.objects.exists()


def test_honeypot_gets_the_same_thanks_and_nothing_is_written(form):
    response = _post(Client(), form, "bot@example.org", website="http://spam.example")
    assert response.status_code == 302
    assert response["Location"].endswith("/thanks/")
    assert not Contact.objects.exists()


def test_too_many_submissions_from_one_address_get_a_429_page(form, settings):
    settings.SIGNUP_SUBMISSIONS_PER_IP = 2
    client = Client(REMOTE_ADDR="192.0.2.77")
    assert _post(client, form, "a@example.org").status_code == 302
    assert _post(client, form, "b@example.org").status_code == 302
    response = _post(client, form, "c@example.org")
    assert response.status_code == 429
    assert "try again later" in response.content.decode()
    assert Contact.objects.count() == 2
    assert _post(Client(REMOTE_ADDR="192.0.2.78"), form, "c@example.org").status_code == 302


@pytest.mark.parametrize("closed", ["disabled", "suspended", "unknown"])
def test_closed_or_unknown_form_is_a_404_page(form, closed):
    public_id = form.public_id
    if closed == "disabled":
        SignupForm.objects.filter(pk=form.pk).update(is_enabled=False)
    elif closed == "suspended":
        Workspace.objects.filter(pk=form.workspace_id).update(status="suspended")
    else:
        public_id = "no-such-form-id"
    url = reverse("signup:signup_page", args=[public_id])
    assert Client().get(url).status_code == 404
    response = Client().post(url, {"email": "x@example.org", "consent": "yes"})
    assert response.status_code == 404
    assert "not available" in response.content.decode()
    assert not Contact.objects.exists()


def _pending(form, email="pending@example.org") -> Subscription:
    contact = ContactFactory(workspace=form.workspace, email=email)
    return SubscriptionFactory(contact=contact, contact_list=form.contact_list, status="pending")


def _confirm_url(subscription, form) -> str:
    token = confirmation_token_make(subscription_id=subscription.pk, form_id=form.pk)
    return reverse("signup:confirm", args=[token])


def test_confirmation_link_get_shows_a_button_and_does_not_confirm(form):
    subscription = _pending(form)
    response = Client().get(_confirm_url(subscription, form))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Yes, subscribe me" in page
    assert 'method="post"' in page
    assert form.workspace.name in page
    assert form.contact_list.name in page
    subscription.refresh_from_db()
    assert subscription.status == "pending"
    assert not ConsentRecord.objects.exists()


def test_confirmation_post_subscribes_with_ip_and_user_agent(form):
    subscription = _pending(form)
    url = _confirm_url(subscription, form)
    client = Client(
        enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.40", HTTP_USER_AGENT="Mail/16.0"
    )
    page = client.get(url)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    response = client.post(url, {"csrfmiddlewaretoken": csrf.group(1)})
    assert response.status_code == 200
    assert "You are subscribed" in response.content.decode()
    subscription.refresh_from_db()
    assert subscription.status == "subscribed"
    record = ConsentRecord.objects.get(action="confirmed")
    assert (record.ip, record.user_agent) == ("203.0.113.40", "Mail/16.0")
    # The link stays harmless: opening it again says so, nothing is recorded twice.
    again = client.get(url)
    assert "You are subscribed" in again.content.decode()
    assert ConsentRecord.objects.filter(action="confirmed").count() == 1


def test_forged_confirmation_link_is_a_404_page_without_any_query(form, django_assert_num_queries):
    subscription = _pending(form)
    token = confirmation_token_make(subscription_id=subscription.pk, form_id=form.pk)
    forged = token.replace(f"{subscription.pk}.", f"{subscription.pk + 1}.", 1)
    client = Client()
    with django_assert_num_queries(0):
        get = client.get(reverse("signup:confirm", args=[forged]))
        post = client.post(reverse("signup:confirm", args=[forged]))
    assert get.status_code == post.status_code == 404
    assert "This link is not valid" in get.content.decode()
    subscription.refresh_from_db()
    assert subscription.status == "pending"


def test_expired_confirmation_link_says_so_without_any_query(
    form, settings, django_assert_num_queries
):
    url = _confirm_url(_pending(form), form)
    settings.SIGNUP_CONFIRMATION_MAX_AGE_SECONDS = -1
    with django_assert_num_queries(0):
        response = Client().post(url)
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert Subscription.objects.get().status == "pending"


def test_confirmation_of_an_unsubscribed_subscription_is_refused(form):
    subscription = _pending(form)
    Subscription.objects.filter(pk=subscription.pk).update(status="unsubscribed")
    response = Client().post(_confirm_url(subscription, form))
    assert response.status_code == 409
    assert Subscription.objects.get().status == "unsubscribed"


# --- Marketer pages


def test_form_list_shows_forms_with_counts_in_constant_queries(
    member_client, django_assert_max_num_queries
):
    form = SignupFormFactory()
    SignupFormFactory(workspace=form.workspace, contact_list=form.contact_list, is_enabled=False)
    _post(Client(), form, "a@example.org")
    client = member_client(form.workspace, Role.VIEWER)
    client.get(_url("contacts:form_list", form.workspace))  # warm the session
    with django_assert_max_num_queries(8):
        response = client.get(_url("contacts:form_list", form.workspace))
    page = response.content.decode()
    assert form.name in page
    assert "Closed" in page
    assert "Live" in page
    assert "New form" not in page  # viewers do not create forms
    assert re.search(r"<td>1</td>\s*<td>0</td>", page)


def test_editor_creates_a_form_for_a_list_of_the_workspace(member_client, workspace):
    own_list = ContactListFactory(workspace=workspace, name="Trail Notes")
    foreign_list = ContactListFactory(name="Someone else's list")
    editor = member_client(workspace, Role.EDITOR)

    page = editor.get(_url("contacts:form_new", workspace)).content.decode()
    assert "Trail Notes" in page
    assert "Someone else" not in page
    refused = editor.post(
        _url("contacts:form_new", workspace),
        {"name": "Footer", "contact_list": foreign_list.pk, "title": "T", "consent_text": "C"},
    )
    assert refused.status_code == 200
    assert not SignupForm.objects.exists()

    response = editor.post(
        _url("contacts:form_new", workspace),
        {
            "name": "Footer form",
            "contact_list": own_list.pk,
            "title": "Get our trail notes",
            "intro": "",
            "consent_text": "Yes, send me trail notes.",
            "button_label": "Sign me up",
            "success_message": "Check your inbox.",
            "ask_name": "on",
            "is_enabled": "on",
        },
    )
    form = SignupForm.objects.get()
    assert response.status_code == 302
    assert response["Location"] == _url("contacts:form_detail", workspace, form_id=form.pk)
    assert (form.workspace, form.contact_list, form.button_label) == (
        workspace,
        own_list,
        "Sign me up",
    )


def test_new_form_page_without_lists_asks_for_a_list_first(member_client, workspace):
    page = member_client(workspace, Role.EDITOR).get(_url("contacts:form_new", workspace))
    assert "Create a list first" in page.content.decode()


def test_form_detail_shows_hosted_url_and_the_snippet_escaped(member_client):
    form = SignupFormFactory(title='Trail <b>"notes"</b>', ask_name=True)
    client = member_client(form.workspace, Role.VIEWER)
    response = client.get(_url("contacts:form_detail", form.workspace, form_id=form.pk))
    page = response.content.decode()
    hosted = f"http://testserver/f/{form.public_id}/"
    assert f'value="{hosted}"' in page
    snippet = re.search(r'<textarea id="embed-snippet"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    # Shown as text on our page, never as live HTML...
    assert "<form" not in snippet
    assert "&lt;form" in snippet
    assert f'<form action="{hosted}"' not in page
    assert "Delete" not in page
    assert "Edit" not in page
    # ...and, once unescaped, a form that posts to the hosted page with every field.
    code = html.unescape(snippet)
    assert f'<form action="{hosted}" method="post"' in code
    for name in ('name="email"', 'name="first_name"', 'name="website"', 'name="consent"'):
        assert name in code
    assert "Trail &lt;b&gt;&quot;notes&quot;&lt;/b&gt;" in code  # the title escaped in the HTML
    assert 'data-copy-from="embed-snippet"' in page
    assert "js/copy.js" in page


def test_editor_edits_and_deletes_a_form(member_client):
    form = SignupFormFactory()
    editor = member_client(form.workspace, Role.EDITOR)
    edit_url = _url("contacts:form_edit", form.workspace, form_id=form.pk)
    assert editor.get(edit_url).status_code == 200
    data = {
        "name": "Renamed",
        "contact_list": form.contact_list.pk,
        "title": form.title,
        "intro": form.intro,
        "consent_text": form.consent_text,
        "button_label": "Join",
        "success_message": form.success_message,
    }
    response = editor.post(edit_url, data)
    assert response.status_code == 302
    form.refresh_from_db()
    assert (form.name, form.button_label, form.ask_name, form.is_enabled) == (
        "Renamed",
        "Join",
        False,
        False,
    )
    assert Client().get(_page(form)).status_code == 404  # closed forms stop answering

    response = editor.post(
        _url("contacts:form_delete", form.workspace, form_id=form.pk),
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == _url("contacts:form_list", form.workspace)
    assert not SignupForm.objects.exists()


def test_form_of_another_workspace_is_404(member_client):
    form, foreign = SignupFormFactory(), SignupFormFactory()
    editor = member_client(form.workspace, Role.EDITOR)
    for name in ("contacts:form_detail", "contacts:form_edit"):
        assert editor.get(_url(name, form.workspace, form_id=foreign.pk)).status_code == 404
    url = _url("contacts:form_delete", form.workspace, form_id=foreign.pk)
    assert editor.post(url).status_code == 404
    assert SignupForm.objects.filter(pk=foreign.pk).exists()
