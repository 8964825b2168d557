"""The public web version of a campaign ("view in browser"): /v/<token>.

The token names (workspace, contact, campaign) and never expires. It is read before any
database query; a forged, tampered or other-purpose token, a campaign or contact outside
the token's workspace, an erased (deleted) contact and a suspended workspace all get the
same 404 page, which says nothing about which it was.

Choices:
- Every campaign status is shown, drafts included: test sends carry the link, and a
  campaign cancelled or paused mid-send is already in inboxes.
- A campaign whose web version is turned off (Campaign.web_version) gets the 404 page,
  even for links in mail sent before it was turned off.
- A suspended workspace's pages are not served: suspension is the operator's answer to
  abuse, and this page is the workspace's content on our domain.
- The page is the campaign's own subject and body: the token names no A/B variant.
- The page is the email itself (rendered for the contact by the same renderer as the send),
  not our layout, so it gets a policy of its own: inline styles and images only, never a
  script, a form, a frame around it or a <base>. A campaign that no longer renders (edited
  directly in the database, or the engine grew stricter) is the 404 page, never a 500.
"""

import logging
from urllib.parse import urlsplit

from csp.constants import NONE, UNSAFE_INLINE
from csp.decorators import csp
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from accounts.models import Workspace
from campaigns import personalise, selectors
from campaigns.rendering import ContextError, TemplateError
from compliance.selectors import token_contact_get
from compliance.tokens import Purpose, token_read

logger = logging.getLogger(__name__)


def _invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "compliance/link_invalid.html", status=404)


def email_page_policy() -> dict[str, list[str]]:
    """The page's whole Content-Security-Policy (the site's own allows no inline style)."""
    base = urlsplit(settings.BASE_URL)
    return {
        "default-src": [NONE],
        "style-src": [UNSAFE_INLINE],
        "img-src": ["https:", "data:", f"{base.scheme}://{base.netloc}"],
        "base-uri": [NONE],
        "form-action": [NONE],
        "frame-ancestors": [NONE],
    }


def _email_page(html: str) -> HttpResponse:
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"  # the URL is the contact's key to this page
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
def web_version(request: HttpRequest, token: str) -> HttpResponse:
    """The campaign as this contact received it, with their merge values and links."""
    claim = token_read(token, purpose=Purpose.WEB_VERSION)
    if claim is None or claim.campaign_id is None:
        return _invalid_link(request)
    contact = token_contact_get(claim=claim)
    if contact is None or contact.workspace.status == Workspace.Status.SUSPENDED:
        return _invalid_link(request)
    try:
        campaign = selectors.campaign_get(
            workspace=contact.workspace, campaign_id=claim.campaign_id
        )
    except Http404:
        return _invalid_link(request)
    if not campaign.web_version:
        return _invalid_link(request)
    try:
        compiled = personalise.campaign_compile(campaign)
        rendered = compiled.render(
            personalise.recipient_context(campaign=campaign, contact=contact)
        )
    except (TemplateError, ContextError) as error:
        logger.warning("Web version of campaign %s does not render: %s", campaign.pk, error)
        return _invalid_link(request)
    # django-csp 4: @csp(policy) replaces the site's policy whole for this response
    # (csp_replace would keep every directive it does not name, script-src 'self' among
    # them). Applied here, not on the view: the 404 page keeps the site's policy, and the
    # policy names BASE_URL, read per request.
    return csp(email_page_policy())(_email_page)(rendered.html)
