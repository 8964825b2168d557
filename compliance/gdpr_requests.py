"""GDPR requests: made by a team member or by the person from the preference center,
run by a worker. Exports are mailed (to the person) as a signed, expiring link; erasures
asked for by the person wait until they confirm from a link mailed to the address."""

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts.audit import audit_record
from accounts.downloads import signed_download_path
from accounts.errors import ApplicationError
from accounts.mail import templated_mail_send
from accounts.models import User, Workspace
from compliance import gdpr
from compliance.models import GdprRequest
from contacts.addresses import InvalidAddress, normalize_email

_CONFIRM_SALT = "compliance.gdpr.erasure_confirm"
# The person's repeated clicks within this many minutes make no new request and no new mail.
PERSON_REQUEST_INTERVAL_MINUTES = 10


# --- Reads -------------------------------------------------------------------------------


def gdpr_request_list(*, workspace: Workspace) -> QuerySet[GdprRequest]:
    return GdprRequest.objects.for_workspace(workspace).select_related("requested_by")


def gdpr_request_get(*, workspace: Workspace, request_id: int) -> GdprRequest:
    from django.shortcuts import get_object_or_404

    return get_object_or_404(gdpr_request_list(workspace=workspace), pk=request_id)


def gdpr_request_by_id(*, request_id: int) -> GdprRequest | None:
    """For signed links only: the id came out of a verified signature."""
    return GdprRequest.objects.select_related("workspace").filter(pk=request_id).first()


# --- Confirmation links ------------------------------------------------------------------


def erasure_confirm_token_make(*, request_id: int) -> str:
    return signing.TimestampSigner(salt=_CONFIRM_SALT).sign(str(request_id))


def erasure_confirm_token_read(token: str) -> int | None:
    """The request id; None when forged, malformed or older than the confirmation window."""
    if len(token) > 200:
        return None
    try:
        value = signing.TimestampSigner(salt=_CONFIRM_SALT).unsign(
            token, max_age=settings.GDPR_CONFIRMATION_MAX_AGE_SECONDS
        )
        return int(value)
    except (signing.BadSignature, ValueError):
        return None


# --- Writes ------------------------------------------------------------------------------


def _clean(email: str) -> str:
    try:
        return normalize_email(email)
    except InvalidAddress as error:
        raise ApplicationError(f"{email!r} is not a valid address: {error}.") from None


def _queue(request: GdprRequest) -> None:
    from compliance.tasks import gdpr_request_run_task

    transaction.on_commit(lambda: gdpr_request_run_task.delay(request.pk))


@transaction.atomic
def gdpr_request_create(
    *, workspace: Workspace, kind: str, email: str, acting_user: User
) -> GdprRequest:
    """A team member's request: queued at once (they answer for having checked identity)."""
    address = _clean(email)
    request = GdprRequest.objects.create(
        workspace=workspace,
        kind=GdprRequest.Kind(kind),
        email=address,
        address_hint=gdpr.address_hint(address),
        requester=GdprRequest.Requester.MARKETER,
        requested_by=acting_user,
    )
    audit_record(
        workspace=workspace,
        actor=acting_user,
        verb=f"gdpr.{request.kind}_requested",
        target=request,
        details={"address_hint": request.address_hint},
    )
    _queue(request)
    return request


@transaction.atomic
def gdpr_request_by_person(*, workspace: Workspace, email: str, kind: str) -> GdprRequest:
    """The person's own request from the preference center. An export is queued and its
    link mailed to the address; an erasure waits for the link mailed to the address."""
    kind = GdprRequest.Kind(kind)
    recent = (
        GdprRequest.objects.for_workspace(workspace)
        .filter(
            kind=kind,
            email__iexact=email,
            requester=GdprRequest.Requester.PERSON,
            created_at__gte=timezone.now() - timedelta(minutes=PERSON_REQUEST_INTERVAL_MINUTES),
        )
        .first()
    )
    if recent is not None:
        return recent  # a second click mails nothing more
    request = GdprRequest.objects.create(
        workspace=workspace,
        kind=kind,
        email=email,
        address_hint=gdpr.address_hint(email),
        requester=GdprRequest.Requester.PERSON,
        status=(
            GdprRequest.Status.AWAITING_CONFIRMATION
            if kind == GdprRequest.Kind.ERASURE
            else GdprRequest.Status.QUEUED
        ),
    )
    with gdpr.client_ip_withheld(True):
        audit_record(
            workspace=workspace,
            actor=None,
            verb=f"gdpr.{kind}_requested",
            target=request,
            details={"address_hint": request.address_hint, "by": "the person"},
        )
    if kind == GdprRequest.Kind.ERASURE:
        token = erasure_confirm_token_make(request_id=request.pk)
        templated_mail_send(
            template="compliance/email/gdpr_erasure_confirm",
            to=[email],
            context={
                "workspace_name": workspace.name,
                "confirm_url": settings.BASE_URL
                + reverse("compliance:gdpr_erasure_confirm", kwargs={"token": token}),
                "max_age_hours": settings.GDPR_CONFIRMATION_MAX_AGE_SECONDS // 3600,
            },
        )
    else:
        _queue(request)
    return request


@transaction.atomic
def gdpr_erasure_confirm(*, request_id: int) -> GdprRequest | None:
    """The person confirmed from the mailed link: queue the erasure (once)."""
    request = GdprRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None:
        return None
    if request.status == GdprRequest.Status.AWAITING_CONFIRMATION:
        request.status, request.confirmed_at = GdprRequest.Status.QUEUED, timezone.now()
        request.save(update_fields=["status", "confirmed_at"])
        _queue(request)
    return request


def gdpr_request_run(*, request_id: int) -> GdprRequest:
    """Run a queued request; a redelivered task of a finished one does nothing."""
    claimed = GdprRequest.objects.filter(
        pk=request_id, status__in=[GdprRequest.Status.QUEUED, GdprRequest.Status.RUNNING]
    ).update(status=GdprRequest.Status.RUNNING)
    request = GdprRequest.objects.select_related("workspace", "requested_by").get(pk=request_id)
    if not claimed:
        return request
    email = request.email
    try:
        if request.kind == GdprRequest.Kind.EXPORT:
            request.file_name = gdpr.gdpr_export(workspace=request.workspace, email=email)
        else:
            gdpr.gdpr_erase(
                workspace=request.workspace, email=email, acting_user=request.requested_by
            )
            request.email = ""
    except Exception as error:
        request.status, request.error = GdprRequest.Status.FAILED, str(error)[:2000]
        request.finished_at = timezone.now()
        request.save(update_fields=["status", "error", "finished_at"])
        raise
    request.status, request.finished_at = GdprRequest.Status.DONE, timezone.now()
    request.save(update_fields=["status", "file_name", "email", "finished_at"])
    if request.kind == GdprRequest.Kind.EXPORT and request.requester == request.Requester.PERSON:
        templated_mail_send(
            template="compliance/email/gdpr_export_ready",
            to=[email],
            context={
                "workspace_name": request.workspace.name,
                "download_url": settings.BASE_URL + signed_download_path(name=request.file_name),
                "max_age_days": settings.DOWNLOAD_LINK_MAX_AGE_SECONDS // 86400,
            },
        )
    return request


def gdpr_export_downloaded(*, request: GdprRequest, acting_user: User) -> None:
    audit_record(
        workspace=request.workspace,
        actor=acting_user,
        verb="gdpr.exported",
        target=request,
        details={"address_hint": request.address_hint},
    )
