"""Blocklist and reverse-DNS monitoring of sending IPs and domains."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.mail import templated_mail_send
from sending.dnsbl import PRESETS, dnsbl_lookup
from sending.models import DnsblListing, DnsblZone, SendingDomain, SendingIp
from sending.ptr import ptr_check
from sending.resolver import DnsClient


def dnsbl_zone_presets_install() -> int:
    """Add the well-known zones, disabled; existing zones are left as operators set them."""
    created = 0
    for preset in PRESETS:
        _, was_created = DnsblZone.objects.get_or_create(
            zone=preset["zone"],
            defaults={
                "name": preset["name"],
                "kind": preset["kind"],
                "listing_codes": preset["listing_codes"],
                "listing_bitmask": preset.get("listing_bitmask"),
                "is_enabled": False,
                "is_preset": True,
            },
        )
        created += was_created
    return created


def _subjects(zone: DnsblZone) -> list[tuple[str, SendingIp | None, SendingDomain | None]]:
    if zone.kind == DnsblZone.Kind.IP:
        return [(ip.address, ip, None) for ip in SendingIp.objects.filter(is_active=True)]
    return [(d.domain, None, d) for d in SendingDomain.objects.select_related("workspace")]


def dnsbl_check_all(*, dns: DnsClient | None = None) -> list[DnsblListing]:
    """Ask every enabled zone about every sending IP / domain; returns the new listings."""
    dns = dns or DnsClient()
    new = []
    for zone in DnsblZone.objects.filter(is_enabled=True):
        errors = []
        for subject, sending_ip, sending_domain in _subjects(zone):
            answer = dnsbl_lookup(dns=dns, zone=zone, subject=subject)
            if answer.error:
                errors.append(answer.error)
                continue  # an error is no verdict: open listings stay as they are
            listing = dnsbl_listing_record(
                zone=zone,
                subject=subject,
                sending_ip=sending_ip,
                sending_domain=sending_domain,
                listed=answer.listed,
                codes=answer.codes,
                reason=answer.reason,
            )
            if listing is not None:
                new.append(listing)
        zone.last_error = "; ".join(errors)[:300]
        zone.last_error_at = timezone.now() if errors else zone.last_error_at
        zone.save(update_fields=["last_error", "last_error_at"])
    return new


@transaction.atomic
def dnsbl_listing_record(
    *,
    zone: DnsblZone,
    subject: str,
    sending_ip: SendingIp | None,
    sending_domain: SendingDomain | None,
    listed: bool,
    codes: list[str],
    reason: str,
) -> DnsblListing | None:
    """Open, refresh or close the listing of subject on zone; returns a newly opened one."""
    now = timezone.now()
    open_listing = (
        DnsblListing.objects.select_for_update()
        .filter(zone=zone, subject=subject, delisted_at__isnull=True)
        .first()
    )
    if not listed:
        if open_listing is not None:
            open_listing.delisted_at = now
            open_listing.save(update_fields=["delisted_at"])
        return None
    if open_listing is not None:
        open_listing.last_seen_at, open_listing.return_codes = now, codes
        open_listing.reason = reason or open_listing.reason
        open_listing.save(update_fields=["last_seen_at", "return_codes", "reason"])
        return None
    listing = DnsblListing.objects.create(
        zone=zone,
        subject=subject,
        sending_ip=sending_ip,
        sending_domain=sending_domain,
        return_codes=codes,
        reason=reason,
        listed_at=now,
        last_seen_at=now,
    )
    audit_record(
        workspace=sending_domain.workspace if sending_domain else None,
        actor=None,
        verb="dnsbl.listed",
        target=listing,
        details={"zone": zone.zone, "subject": subject, "codes": codes, "reason": reason[:300]},
    )
    transaction.on_commit(lambda: dnsbl_listing_alert(listing=listing))
    return listing


def dnsbl_listing_alert(*, listing: DnsblListing) -> None:
    """Email the operators about a new listing (it also waits in the admin, unacknowledged)."""
    recipients = [address for _, address in settings.ADMINS]
    if not recipients:
        return
    templated_mail_send(
        template="sending/email/dnsbl_listing",
        to=recipients,
        context={"listing": listing, "zone": listing.zone},
    )


def sending_ip_ptr_check(*, sending_ip: SendingIp, dns: DnsClient | None = None) -> SendingIp:
    result = ptr_check(
        dns=dns or DnsClient(), address=sending_ip.address, helo_hostname=sending_ip.helo_hostname
    )
    sending_ip.ptr_state = result.state
    sending_ip.ptr_names = result.names
    sending_ip.ptr_detail = result.detail[:500]
    sending_ip.ptr_checked_at = timezone.now()
    sending_ip.save(update_fields=["ptr_state", "ptr_names", "ptr_detail", "ptr_checked_at"])
    return sending_ip


def sending_ip_ptr_check_all(*, dns: DnsClient | None = None) -> int:
    dns = dns or DnsClient()
    ips = list(SendingIp.objects.filter(is_active=True))
    for sending_ip in ips:
        sending_ip_ptr_check(sending_ip=sending_ip, dns=dns)
    return len(ips)
