"""Public unsubscribe and preference pages: no session, a signed token in the URL.

Every view reads its token first (no database query until the signature verifies), and
answers a forged, truncated, tampered, cross-purpose or foreign-workspace token with the
same 404 page, which writes nothing.
"""

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from compliance import selectors, services
from compliance.tokens import Purpose, preferences_token, token_read

logger = logging.getLogger(__name__)

ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"


def _client(request: HttpRequest) -> dict:
    return {
        "ip": getattr(request, "client_ip", None),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:500],
    }


def _invalid_link(request: HttpRequest) -> HttpResponse:
    # Nothing of the token is trusted, so no workspace brand: the product's own page.
    return render(request, "compliance/link_invalid.html", status=404)


def _unsubscribe_context(contact, contact_list, claim) -> dict:
    return {
        "contact": contact,
        "contact_list": contact_list,
        "brand_workspace": contact.workspace,
        "preferences_token": preferences_token(
            workspace_id=claim.workspace_id, contact_id=claim.contact_id
        ),
    }


def _is_one_click(request: HttpRequest) -> bool:
    return request.POST.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE


# CSRF is decided by the body, so the view is exempt and checks by hand. A mailbox
# provider's RFC 8058 one-click POST carries no cookie and no CSRF token, by design: the
# signed token in the URL is the authority, and the request acts for no session (so there
# is nothing for a forged cross-site request to borrow). Every other POST is the page's
# button and must pass Django's own CSRF check: it is handed to the same code wrapped in
# csrf_protect, which runs CsrfViewMiddleware's checks (token, Origin, Referer) for it.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET asks (link scanners prefetch GETs; they never press buttons); POST unsubscribes."""
    claim = token_read(token, purpose=Purpose.UNSUBSCRIBE)
    if claim is None:
        return _invalid_link(request)
    if request.method == "POST" and _is_one_click(request):
        return _unsubscribe_apply(request, claim, one_click=True)
    if request.method == "POST":
        return _unsubscribe_button(request, claim)
    contact = selectors.token_contact_get(claim=claim)
    if contact is None:
        return _invalid_link(request)
    contact_list = selectors.token_list_get(claim=claim)
    return render(
        request,
        "compliance/unsubscribe.html",
        _unsubscribe_context(contact, contact_list, claim),
    )


def _unsubscribe_apply(request: HttpRequest, claim, *, one_click: bool) -> HttpResponse:
    contact = selectors.token_contact_get(claim=claim)
    if contact is None:
        return _invalid_link(request)
    contact_list = selectors.token_list_get(claim=claim)
    if claim.list_id is not None and contact_list is None:
        # The list was deleted since the mail went out: nothing to leave but everything.
        logger.info("Unsubscribe token names missing list %s; leaving all.", claim.list_id)
    services.contact_unsubscribe_by_link(
        contact=contact,
        contact_list=contact_list,
        campaign_id=claim.campaign_id,
        source="One-click unsubscribe (RFC 8058)" if one_click else "Unsubscribe link",
        **_client(request),
    )
    if one_click:
        return HttpResponse("Unsubscribed.\n", content_type="text/plain; charset=utf-8")
    return render(
        request,
        "compliance/unsubscribe_done.html",
        _unsubscribe_context(contact, contact_list, claim),
    )


@csrf_protect
def _unsubscribe_button(request: HttpRequest, claim) -> HttpResponse:
    return _unsubscribe_apply(request, claim, one_click=False)


@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """The contact's lists with on/off, a global opt-out, and the way to their data."""
    claim = token_read(token, purpose=Purpose.PREFERENCES)
    if claim is None:
        return _invalid_link(request)
    contact = selectors.token_contact_get(claim=claim)
    if contact is None:
        return _invalid_link(request)
    refused: list[str] = []
    if request.method == "POST":
        if request.POST.get("action") == "unsubscribe_all":
            services.contact_unsubscribe_by_link(
                contact=contact,
                contact_list=None,
                source="Preference center: unsubscribe from everything",
                **_client(request),
            )
            return redirect(f"{request.path}?saved=all")
        wanted: set[int] = set()
        for raw in request.POST.getlist("lists"):
            try:
                wanted.add(int(raw))
            except ValueError:
                logger.warning("Preference center: ignored list id %r.", raw[:40])
        changes = services.contact_preferences_update(
            contact=contact, wanted_list_ids=wanted, **_client(request)
        )
        refused = changes.refused
        if not refused:
            return redirect(f"{request.path}?saved=1")
    return render(
        request,
        "compliance/preferences.html",
        {
            "contact": contact,
            "brand_workspace": contact.workspace,
            "rows": selectors.preference_rows(contact=contact),
            "opted_out": selectors.contact_opted_out_everywhere(contact=contact),
            "saved": request.GET.get("saved", ""),
            "refused": refused,
            "token": token,
        },
    )
