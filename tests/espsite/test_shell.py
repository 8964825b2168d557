"""The app shell: navigation, switcher, security headers, htmx, error pages."""

import pytest
from django.test import Client

from accounts.models import Role, Workspace
from tests.factories import MembershipFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_dashboard_shows_navigation_and_getting_started(member_client):
    workspace = WorkspaceFactory(postal_address="")
    client = member_client(workspace, Role.OWNER)
    page = client.get(f"/w/{workspace.slug}/")
    html = page.content.decode()
    for label in ("Dashboard", "Contacts", "Campaigns", "Sending", "Reports", "Settings"):
        assert f">{label}</a>" in html
    assert "Getting started" in html
    assert "0 of 5 done" in html
    assert "Add your postal address" in html
    assert f'href="/w/{workspace.slug}/settings/"' in html


def test_getting_started_steps_follow_real_state(member_client):
    workspace = WorkspaceFactory(postal_address="1 Road")
    client = member_client(workspace, Role.OWNER)
    MembershipFactory(workspace=workspace, role=Role.EDITOR)
    assert "2 of 5 done" in client.get(f"/w/{workspace.slug}/").content.decode()


@pytest.mark.parametrize(
    ("path", "empty_text"),
    [
        ("contacts/", "No contacts yet"),
        ("campaigns/", "No campaigns yet"),
        ("sending/", "No sending domain yet"),
        ("reports/", "Nothing to report yet"),
    ],
)
def test_sections_show_empty_states(member_client, path, empty_text):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.VIEWER)
    page = client.get(f"/w/{workspace.slug}/{path}")
    assert page.status_code == 200
    assert empty_text in page.content.decode()
    assert 'aria-current="page"' in page.content.decode()


def test_pending_workspace_shows_review_banner(member_client):
    workspace = WorkspaceFactory(status=Workspace.Status.PENDING_REVIEW)
    page = member_client(workspace).get(f"/w/{workspace.slug}/")
    assert "is waiting for review" in page.content.decode()


def test_suspended_workspace_shows_reason(member_client):
    workspace = WorkspaceFactory(status=Workspace.Status.SUSPENDED, status_reason="complaint rate")
    page = member_client(workspace).get(f"/w/{workspace.slug}/")
    assert "Sending is suspended" in page.content.decode()
    assert "complaint rate" in page.content.decode()


def test_pages_carry_csp_and_security_headers(member_client):
    workspace = WorkspaceFactory()
    response = member_client(workspace).get(f"/w/{workspace.slug}/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_htmx_is_served_from_our_static_files_with_csrf_header(member_client):
    workspace = WorkspaceFactory()
    client = member_client(workspace)
    html = client.get(f"/w/{workspace.slug}/").content.decode()
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer>' in html
    assert "https://" not in html.split("<body")[0]  # nothing from a CDN in <head>
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert '"includeIndicatorStyles": false' in html


def test_htmx_fragment_returns_only_the_panel(member_client):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.OWNER)
    invite = f"/w/{workspace.slug}/settings/members/invite/"
    fragment = client.post(
        invite, {"email": "not-an-address", "role": "editor"}, headers={"HX-Request": "true"}
    )
    html = fragment.content.decode()
    assert fragment.status_code == 200
    assert html.lstrip().startswith('<div id="members-panel"')
    assert "<html" not in html
    assert "Enter a valid email address" in html


def test_forms_require_csrf(workspace):
    membership = MembershipFactory(workspace=workspace, role=Role.OWNER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(membership.user)
    response = client.post(
        f"/w/{workspace.slug}/settings/", {"name": "x", "postal_address": "", "time_zone": "UTC"}
    )
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


def test_login_form_is_accessible(client):
    html = client.get("/accounts/login/").content.decode()
    assert '<label for="id_email"' in html
    assert '<label for="id_password"' in html
    assert 'autocomplete="current-password"' in html


def test_form_errors_are_tied_to_fields(client):
    html = client.post("/accounts/signup/", {"email": "bad"}).content.decode()
    assert 'aria-invalid="true"' in html
    assert "This field is required." in html


def test_404_page_is_branded(client):
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    assert "This page does not exist" in response.content.decode()


def test_500_page_is_branded(client, settings):
    from django.urls import path

    def boom(request):
        raise RuntimeError("boom")

    settings.ROOT_URLCONF = type("urls", (), {"urlpatterns": [path("boom/", boom)]})
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()


def test_home_without_workspace_leads_to_creating_one(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory())
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/workspaces/new/"
    assert "Create your workspace" in response.content.decode()


def test_anonymous_home_leads_to_sign_in(client):
    assert client.get("/")["Location"] == "/accounts/login/"


def test_getting_started_steps_come_from_every_app(member_client):
    from contacts.models import Contact
    from sending.models import SendingDomain
    from sending.services.domains import sending_domain_add

    workspace = WorkspaceFactory(postal_address="1 Road")
    client = member_client(workspace, Role.OWNER)
    html = client.get(f"/w/{workspace.slug}/").content.decode()
    assert "1 of 5 done" in html
    assert f'hx-get="/w/{workspace.slug}/sending/panel/"' in html

    Contact.objects.create(workspace=workspace, email="first@example.com")
    domain = sending_domain_add(workspace=workspace, domain="mail.shop.example", acting_user=None)
    SendingDomain.objects.filter(pk=domain.pk).update(status=SendingDomain.Status.VERIFIED)
    assert "3 of 5 done" in client.get(f"/w/{workspace.slug}/").content.decode()
    panel = client.get(f"/w/{workspace.slug}/sending/panel/", headers={"HX-Request": "true"})
    assert 'data-fact="verified">1<' in panel.content.decode()
