"""The sending pages: add a domain, records with copy buttons, htmx verify, roles."""

import pytest
from django.urls import reverse

from accounts.models import Role
from sending.models import SendingDomain
from sending.services.domains import sending_domain_add
from tests.factories import WorkspaceFactory
from tests.sending.conftest import publish

pytestmark = pytest.mark.django_db


def _url(name, workspace, **kwargs):
    return reverse(f"sending:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


def test_admin_adds_a_domain_with_htmx_and_lands_on_its_records(member_client):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    response = client.post(
        _url("domain_add", workspace),
        {"domain": "News.Example.com"},
        headers={"HX-Request": "true"},
    )
    domain = SendingDomain.objects.get(workspace=workspace)
    assert domain.domain == "news.example.com"
    assert response["HX-Redirect"] == _url("domain_detail", workspace, domain_id=domain.pk)

    page = client.get(response["HX-Redirect"]).content.decode()
    key = domain.dkim_keys.get()
    assert "esp1._domainkey.news.example.com" in page
    assert key.record_value in page
    assert "v=spf1 include:_spf.testserver ~all" in page
    assert "v=DMARC1; p=none; rua=mailto:dmarc-reports@news.example.com" in page
    assert "10 inbound.testserver" in page
    assert page.count('data-copy-from="') == 10  # name and value of five records
    assert "js/copy.js" in page
    assert key.private_key.splitlines()[1] not in page


def test_invalid_domain_shows_the_error_in_the_form(member_client):
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    response = client.post(
        _url("domain_add", workspace), {"domain": "not a domain"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert b'id="domain-add"' in response.content
    assert b"without an address, scheme or path" in response.content
    assert not SendingDomain.objects.exists()


def test_claimed_domain_message_is_the_same_for_every_other_workspace(member_client):
    sending_domain_add(workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None)
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.ADMIN)
    response = client.post(_url("domain_add", workspace), {"domain": "news.example.com"})
    assert response.status_code == 400
    assert b"This domain cannot be added" in response.content


def test_verify_button_swaps_in_each_records_state(member_client, dns_server):
    workspace = WorkspaceFactory()
    domain = sending_domain_add(workspace=workspace, domain="news.example.com", acting_user=None)
    publish(dns_server, domain, skip=["dmarc"], spf=["v=spf1 ~all"])
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("domain_verify", workspace, domain_id=domain.pk), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="records-panel"')
    assert 'data-record="dkim:esp1" data-state="pass"' in html
    assert 'data-record="dmarc" data-state="missing"' in html
    assert 'data-record="spf" data-state="mismatch"' in html
    assert "does not include:_spf.testserver" in html
    assert "Some records are not right yet" in html


def test_viewer_sees_records_but_cannot_verify_or_add(member_client):
    workspace = WorkspaceFactory()
    domain = sending_domain_add(workspace=workspace, domain="news.example.com", acting_user=None)
    viewer = member_client(workspace, Role.VIEWER)
    page = viewer.get(_url("domain_detail", workspace, domain_id=domain.pk)).content.decode()
    assert "esp1._domainkey.news.example.com" in page
    assert "Verify DNS records" not in page
    assert "Rotate key" not in page
    assert viewer.post(_url("domain_verify", workspace, domain_id=domain.pk)).status_code == 403
    assert viewer.post(_url("domain_add", workspace), {"domain": "a.example"}).status_code == 403


def test_domain_of_another_workspace_is_404(member_client):
    domain = sending_domain_add(
        workspace=WorkspaceFactory(), domain="news.example.com", acting_user=None
    )
    workspace = WorkspaceFactory()
    client = member_client(workspace, Role.OWNER)
    for name in ("domain_detail", "domain_verify", "domain_rotate_key", "domain_remove"):
        method = client.get if name == "domain_detail" else client.post
        assert method(_url(name, workspace, domain_id=domain.pk)).status_code == 404
    assert SendingDomain.objects.filter(pk=domain.pk).exists()


def test_dashboard_panel_flags_a_failing_domain(member_client):
    workspace = WorkspaceFactory()
    domain = sending_domain_add(workspace=workspace, domain="news.example.com", acting_user=None)
    SendingDomain.objects.filter(pk=domain.pk).update(status=SendingDomain.Status.FAILING)
    client = member_client(workspace, Role.VIEWER)
    html = client.get(_url("dashboard_panel", workspace)).content.decode()
    assert "news.example.com</strong> stopped passing its DNS checks" in html
    assert '<dd data-fact="failing">1</dd>' in html
    assert '<dd data-fact="verified">0</dd>' in html


def test_overview_lists_domains_with_their_status(member_client, django_assert_max_num_queries):
    workspace = WorkspaceFactory()
    for name in ("a.example.com", "b.example.com", "c.example.com"):
        sending_domain_add(workspace=workspace, domain=name, acting_user=None)
    client = member_client(workspace, Role.VIEWER)
    with django_assert_max_num_queries(12):
        html = client.get(_url("overview", workspace)).content.decode()
    assert html.count('class="badge badge-domain-pending"') == 3
    assert "Add a sending domain" not in html  # viewers do not manage domains
