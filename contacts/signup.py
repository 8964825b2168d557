"""Public signup forms, the read side: form lookups, their counts, and the Redis limits that
stand between a public form and list bombing.

Write paths (submit, confirm, form changes) are in contacts/services/signup.py.
"""

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.urls import reverse

from accounts.models import Workspace
from accounts.throttles import rate_limit_hit
from contacts.models import ConsentRecord, SignupForm, Subscription
from contacts.suppressions import address_hash
from contacts.tokens import ConfirmationClaim

HONEYPOT_FIELD = "website"


def signup_form_list(*, workspace: Workspace) -> QuerySet[SignupForm]:
    return SignupForm.objects.for_workspace(workspace).select_related("contact_list")


def signup_form_public_get(*, public_id: str) -> SignupForm | None:
    """The form behind a public URL, if it takes submissions (enabled, workspace not suspended)."""
    return (
        SignupForm.objects.select_related("workspace", "contact_list")
        .filter(public_id=public_id, is_enabled=True)
        .exclude(workspace__status=Workspace.Status.SUSPENDED)
        .first()
    )


def signup_confirmation_subscription(*, claim: ConfirmationClaim) -> Subscription | None:
    """The subscription a verified confirmation token names, with its list and workspace."""
    return (
        Subscription.objects.select_related("contact", "contact_list", "workspace")
        .filter(pk=claim.subscription_id)
        .first()
    )


def signup_form_url(*, form: SignupForm) -> str:
    """The absolute URL of the hosted page, which is also where the embed snippet posts."""
    return settings.BASE_URL + reverse("signup:signup_page", args=[form.public_id])


def signup_form_counts(*, workspace: Workspace, forms: list[SignupForm]) -> dict[int, dict]:
    """Per form id: {"submitted": n, "confirmed": n}, counted from the consent records whose
    source is the form's URL (one query for all forms)."""
    by_source = {signup_form_url(form=form): form.pk for form in forms}
    counts = {form.pk: {"submitted": 0, "confirmed": 0} for form in forms}
    if not by_source:
        return counts
    rows = (
        ConsentRecord.objects.filter(workspace=workspace)
        .filter(method=ConsentRecord.Method.FORM, source__in=list(by_source))
        .values("source", "action")
        .annotate(n=Count("id"))
        .order_by()
    )
    names = {ConsentRecord.Action.GRANTED: "submitted", ConsentRecord.Action.CONFIRMED: "confirmed"}
    for row in rows:
        name = names.get(row["action"])
        if name:
            counts[by_source[row["source"]]][name] = row["n"]
    return counts


def signup_ip_allows(*, ip: str | None) -> bool:
    """Count one submission from this client address; False once over the limit for the window.

    Addresses that cannot be told apart (no IP) share one bucket, which is stricter, not looser.
    """
    return rate_limit_hit(
        kind="signup-ip",
        value=ip or "unknown",
        limit=settings.SIGNUP_SUBMISSIONS_PER_IP,
        window_seconds=settings.SIGNUP_SUBMISSION_WINDOW_SECONDS,
    )


def signup_confirmation_claim(*, email: str) -> bool:
    """Claim the one confirmation mail this address may get per interval; False if it had it.

    Platform-wide: list bombing submits one victim to many sites' forms, so a limit per
    workspace or per list would still flood the victim. The key is the keyed address hash
    of the suppression list, so Redis never holds the address itself.
    """
    key = f"signup-confirmation:{address_hash(email)}"
    return cache.add(key, 1, timeout=settings.SIGNUP_CONFIRMATION_INTERVAL_SECONDS)
