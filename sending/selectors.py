"""Reads of the sending app; views and other apps go through these."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from accounts.models import Workspace
from contacts.timeline import TimelineEvent
from sending import dkim
from sending.dnscheck import DomainSpec, ExpectedKey, dmarc_expected_value, spf_expected_value
from sending.domain_names import InvalidDomain, domain_normalize
from sending.models import (
    Delivery,
    DeliveryAttempt,
    DkimKey,
    DnsblListing,
    DomainCheck,
    FeedbackEvent,
    IpPool,
    SendingDomain,
    SendingIp,
    WorkspacePool,
)


def sending_domain_list(*, workspace: Workspace) -> QuerySet[SendingDomain]:
    return SendingDomain.objects.for_workspace(workspace).order_by("domain")


def sending_domain_get(*, workspace: Workspace, domain_id: int) -> SendingDomain:
    domain = SendingDomain.objects.for_workspace(workspace).filter(pk=domain_id).first()
    if domain is None:
        raise Http404("No such domain.")
    return domain


def dkim_key_list_published(*, domain: SendingDomain) -> QuerySet[DkimKey]:
    """Keys whose records must be in DNS: signing, waiting to sign, or in their grace period.

    Publishing needs public keys only: the sealed private keys are not even loaded.
    """
    return (
        domain.dkim_keys.filter(
            status__in=[DkimKey.Status.ACTIVE, DkimKey.Status.PENDING, DkimKey.Status.RETIRING]
        )
        .defer("private_key")
        .order_by("algorithm", "created_at")
    )


def dkim_key_list_signing(*, domain: SendingDomain) -> list[DkimKey]:
    """The keys that sign this domain's mail: RSA first, then Ed25519 as a second signature."""
    keys = list(domain.dkim_keys.filter(status=DkimKey.Status.ACTIVE))
    return sorted(keys, key=lambda key: key.algorithm != DkimKey.Algorithm.RSA)


def domain_check_list(*, domain: SendingDomain, limit: int = 10) -> QuerySet[DomainCheck]:
    return domain.checks.all()[:limit]


def sending_domain_for_from_address(*, workspace: Workspace, address: str) -> SendingDomain | None:
    """The verified domain of the workspace that a From address aligns with, else None.

    The address's own domain, or a parent domain whose DMARC alignment is relaxed (a
    subdomain From aligns with d=<parent> only under adkim=r).
    """
    _, at, domain_part = (address or "").strip().rpartition("@")
    if not at:
        return None
    try:
        name = domain_normalize(domain_part)
    except InvalidDomain:
        return None
    labels = name.split(".")
    candidates = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    verified = {
        domain.domain: domain
        for domain in SendingDomain.objects.for_workspace(workspace).filter(
            status=SendingDomain.Status.VERIFIED, domain__in=candidates
        )
    }
    if name in verified:
        return verified[name]
    for parent in candidates[1:]:  # nearest parent first
        domain = verified.get(parent)
        if domain is not None:
            dmarc = domain.record_states.get("dmarc") or {}
            return domain if dmarc.get("adkim", "r") == "r" else None
    return None


def ip_pool_for_workspace(*, workspace: Workspace) -> IpPool | None:
    assignment = WorkspacePool.objects.for_workspace(workspace).select_related("pool").first()
    if assignment is not None:
        return assignment.pool
    return IpPool.objects.filter(is_default=True).first()


def sending_ip_list_for_workspace(*, workspace: Workspace) -> QuerySet[SendingIp]:
    pool = ip_pool_for_workspace(workspace=workspace)
    if pool is None:
        return SendingIp.objects.none()
    return pool.ips.filter(is_active=True).order_by("address")


def dnsbl_listing_list_open_for_workspace(*, workspace: Workspace) -> QuerySet[DnsblListing]:
    """Open listings of the workspace's domains and of the IPs it sends from."""
    ips = sending_ip_list_for_workspace(workspace=workspace)
    return (
        DnsblListing.objects.filter(delisted_at__isnull=True)
        .filter(Q(sending_domain__workspace=workspace) | Q(sending_ip__in=ips))
        .select_related("zone")
        .order_by("-listed_at")
    )


def sending_summary(*, workspace: Workspace) -> dict:
    """Facts for the workspace dashboard."""
    domains = list(sending_domain_list(workspace=workspace))
    return {
        "domain_count": len(domains),
        "verified": [d for d in domains if d.status == SendingDomain.Status.VERIFIED],
        "failing": [d for d in domains if d.status == SendingDomain.Status.FAILING],
        "pending": [d for d in domains if d.status == SendingDomain.Status.PENDING],
        "listings": list(dnsbl_listing_list_open_for_workspace(workspace=workspace)),
    }


def sending_domain_spec(*, domain: SendingDomain) -> DomainSpec:
    """What the domain must publish, as the checks expect it."""
    keys = []
    for key in dkim_key_list_published(domain=domain):
        label = "DKIM" if key.algorithm == DkimKey.Algorithm.RSA else "DKIM (Ed25519)"
        if key.status != DkimKey.Status.ACTIVE:
            label += f" · {key.get_status_display().lower()}"
        keys.append(
            ExpectedKey(
                selector=key.selector,
                algorithm=key.algorithm,
                public_key=key.public_key,
                label=label,
                key=key.record_key,
            )
        )
    ips = [ip.address for ip in sending_ip_list_for_workspace(workspace=domain.workspace)]
    return DomainSpec(
        domain=domain.domain,
        keys=keys,
        spf_host=domain.return_path_host,
        platform_ips=ips,
        spf_include=settings.SENDING_SPF_DOMAIN,
        return_path_host=domain.return_path_host,
        inbound_host=settings.SENDING_INBOUND_HOST,
        tracking_host=domain.tracking_host,
        tracking_target=settings.SENDING_TRACKING_HOST,
        dmarc_rua=settings.DMARC_REPORT_ADDRESS,
    )


def sending_domain_records(*, domain: SendingDomain) -> list[dict]:
    """The records to publish, each with its last checked state and what was found."""
    spec = sending_domain_spec(domain=domain)
    rows = []
    for key in spec.keys:
        value = dkim.dkim_record_value(algorithm=key.algorithm, public_b64=key.public_key)
        rows.append(
            {
                "key": key.record_key,
                "label": key.label,
                "type": "TXT",
                "name": f"{key.selector}._domainkey.{domain.domain}",
                "value": value,
                "chunks": dkim.dkim_record_chunks(value),
                "required": key.algorithm == dkim.RSA and "·" not in key.label,
            }
        )
    rows += [
        {"key": "spf", "label": "SPF", "type": "TXT", "name": spec.spf_host,
         "value": spf_expected_value(spec), "required": True},
        {"key": "dmarc", "label": "DMARC", "type": "TXT", "name": f"_dmarc.{domain.domain}",
         "value": dmarc_expected_value(spec), "required": True},
        {"key": "return_path", "label": "Return path (bounces)", "type": "MX",
         "name": spec.return_path_host, "value": f"10 {spec.inbound_host}", "required": True},
        {"key": "tracking", "label": "Tracking links", "type": "CNAME",
         "name": spec.tracking_host, "value": spec.tracking_target, "required": False},
    ]  # fmt: skip
    for row in rows:
        result = domain.record_states.get(row["key"]) or {}
        row["state"] = result.get("state", "pending")
        row["result"] = result
    return rows


def sending_domain_signing_for(address: str) -> SendingDomain | None:
    """The verified sending domain, of whichever workspace owns it, that address aligns with."""
    _, _, host = address.rpartition("@")
    try:
        name = domain_normalize(host)
    except InvalidDomain:
        return None
    labels = name.split(".")
    names = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    owners = SendingDomain.objects.filter(
        domain__in=names, status=SendingDomain.Status.VERIFIED
    ).select_related("workspace")
    # Alignment rules (relaxed or strict DMARC) stay the selector's: ask it per owner.
    for owner in sorted(owners, key=lambda domain: len(domain.domain), reverse=True):
        found = sending_domain_for_from_address(workspace=owner.workspace, address=address)
        if found is not None:
            return found
    return None


def return_path_host_exists(*, host: str) -> bool:
    """Whether host is the return-path host of a sending domain of any workspace, in any
    status: the inbound listener takes mail for these hosts and for no other domain."""
    try:
        name = domain_normalize(host)
    except InvalidDomain:
        return False
    subdomain, _, domain = name.partition(".")
    return SendingDomain.objects.filter(
        return_path_subdomain__iexact=subdomain, domain=domain
    ).exists()


def return_path_host_list() -> list[str]:
    """Every host return_path_host_exists accepts, sorted: what a Postfix in front of the
    listener must relay to it (`manage.py mailin --print-postfix-domains`)."""
    rows = SendingDomain.objects.values_list("return_path_subdomain", "domain")
    return sorted({f"{subdomain}.{domain}".lower() for subdomain, domain in rows})


# --- A delivery's story and a campaign's feedback -------------------------------------------


def delivery_get(*, workspace: Workspace, campaign_id: int, delivery_id: int) -> Delivery:
    delivery = (
        Delivery.objects.for_workspace(workspace)
        .filter(campaign_id=campaign_id, pk=delivery_id)
        .select_related("contact")
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    return delivery


def delivery_attempt_list(*, delivery: Delivery) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(delivery=delivery).order_by("started_at", "pk")


def delivery_feedback_list(*, delivery: Delivery) -> QuerySet[FeedbackEvent]:
    return FeedbackEvent.objects.filter(delivery=delivery).order_by("occurred_at", "pk")


FEEDBACK_COUNT_KEYS = ("hard", "soft", "block", "unknown", "complained")


def campaign_feedback_counts(*, campaign) -> dict[str, int]:
    """Bounced deliveries by class (no class counts as unknown) and complaints, in one
    aggregate over the campaign's deliveries."""
    bounced = Q(state=Delivery.State.BOUNCED) | Q(bounced_at__isnull=False)
    by_class = {
        name: Count("pk", filter=bounced & Q(bounce_class=name))
        for name in ("hard", "soft", "block")
    }
    by_class["unknown"] = Count(
        "pk", filter=bounced & Q(bounce_class__in=[Delivery.BounceClass.UNKNOWN, ""])
    )
    return Delivery.objects.filter(campaign=campaign).aggregate(
        **by_class, complained=Count("pk", filter=Q(complained_at__isnull=False))
    )


# The newest deliveries a contact's timeline shows: a long history stays one bounded read.
TIMELINE_DELIVERY_LIMIT = 200
_TIMELINE_FIELDS = [
    "campaign__name",
    "state",
    "sent_at",
    "bounced_at",
    "complained_at",
    "bounce_class",
    "last_response",
    "updated_at",
]


def contact_delivery_timeline(contact) -> list[TimelineEvent]:
    """The contact's sends, bounces, complaints and unsubscribes by email over its newest
    TIMELINE_DELIVERY_LIMIT deliveries, in two queries (registered in contacts.timeline)."""
    happened = (
        Q(sent_at__isnull=False)
        | Q(bounced_at__isnull=False)
        | Q(complained_at__isnull=False)
        | Q(state=Delivery.State.BOUNCED)
    )
    deliveries = list(
        Delivery.objects.filter(workspace_id=contact.workspace_id, contact=contact)
        .filter(happened)
        .select_related("campaign")
        .only(*_TIMELINE_FIELDS)
        .order_by("-created_at", "-pk")[:TIMELINE_DELIVERY_LIMIT]
    )
    if not deliveries:
        return []
    feedback: dict[int, list[FeedbackEvent]] = {}
    for event in (
        FeedbackEvent.objects.filter(
            delivery__in=[delivery.pk for delivery in deliveries],
            kind__in=[FeedbackEvent.Kind.BOUNCE, FeedbackEvent.Kind.UNSUBSCRIBE],
        )
        .only("delivery_id", "kind", "diagnostic", "occurred_at")
        .order_by("occurred_at", "pk")
    ):
        feedback.setdefault(event.delivery_id, []).append(event)
    events = []
    for delivery in deliveries:
        events += _delivery_events(delivery, feedback.get(delivery.pk, []))
    return events


def _delivery_events(delivery: Delivery, feedback: list[FeedbackEvent]) -> list[TimelineEvent]:
    name = delivery.campaign.name
    events = []
    if delivery.sent_at:
        events.append(TimelineEvent(at=delivery.sent_at, kind="sent", title=f"Sent: {name}"))
    bounces = [event for event in feedback if event.kind == FeedbackEvent.Kind.BOUNCE]
    if delivery.bounced_at or delivery.state == Delivery.State.BOUNCED:
        diagnostic = bounces[-1].diagnostic if bounces else delivery.last_response
        title = f"Bounced ({delivery.bounce_class or 'unknown'}): {name}"
        at = delivery.bounced_at or (bounces[-1].occurred_at if bounces else delivery.updated_at)
        events.append(
            TimelineEvent(
                at=at, kind="bounced", title=f"{title} — {diagnostic}" if diagnostic else title
            )
        )
    if delivery.complained_at:
        events.append(
            TimelineEvent(at=delivery.complained_at, kind="complained", title=f"Complained: {name}")
        )
    events += [
        TimelineEvent(
            at=event.occurred_at, kind="unsubscribed", title="Unsubscribed by email", detail=name
        )
        for event in feedback
        if event.kind == FeedbackEvent.Kind.UNSUBSCRIBE
    ]
    return events


# --- Feedback rates (reports, traffic shaping) ----------------------------------------------


def feedback_block_counts(*, since: dt.datetime) -> dict[str, int]:
    """Deliveries refused or delayed as blocks (policy, reputation, content) since `since`,
    per sending (From) domain, across workspaces: what shaping slows down on."""
    rows = (
        FeedbackEvent.objects.filter(bounce_class=FeedbackEvent.BounceClass.BLOCK)
        .filter(occurred_at__gte=since)
        .exclude(sending_domain="")
        .order_by()
        .values("sending_domain")
        .annotate(n=Count("delivery", distinct=True))
    )
    return {row["sending_domain"]: row["n"] for row in rows}


@dataclass(frozen=True)
class FeedbackRates:
    """A workspace's feedback over a window. `sent`: deliveries handed over (accepted, or
    refused during the SMTP session); `bounces`: bounced deliveries by class."""

    sent: int
    bounces: dict[str, int]
    complaints: int

    @property
    def bounced(self) -> int:
        return sum(self.bounces.values())

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sent if self.sent else 0.0


def feedback_rates(*, workspace: Workspace, since: dt.datetime) -> FeedbackRates:
    """Sent, bounced (refused at once, or by a later report) and complained deliveries of
    the workspace since `since`, in one aggregate."""
    refused_at_once = Q(
        state=Delivery.State.BOUNCED, bounced_at__isnull=True, updated_at__gte=since
    )
    bounced = Q(bounced_at__gte=since) | refused_at_once
    counts = (
        Delivery.objects.for_workspace(workspace)
        .filter(
            Q(sent_at__gte=since)
            | Q(bounced_at__gte=since)
            | Q(complained_at__gte=since)
            | refused_at_once
        )
        .aggregate(
            sent=Count("pk", filter=Q(sent_at__gte=since) | refused_at_once),
            hard=Count("pk", filter=bounced & Q(bounce_class="hard")),
            soft=Count("pk", filter=bounced & Q(bounce_class="soft")),
            block=Count("pk", filter=bounced & Q(bounce_class="block")),
            unknown=Count("pk", filter=bounced & Q(bounce_class__in=["unknown", ""])),
            complaints=Count("pk", filter=Q(complained_at__gte=since)),
        )
    )
    return FeedbackRates(
        sent=counts["sent"],
        bounces={name: counts[name] for name in ("hard", "soft", "block", "unknown")},
        complaints=counts["complaints"],
    )
