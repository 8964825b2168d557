"""Demo data of the sending app, for `manage.py seed_demo`: no DNS is queried. Besides the
domain and pool, a small "Welcome" campaign already sent, with what came back (a hard
bounce, a block, a complaint) and the inbound mail the operators review; the demo IP
warming up, and a new workspace ("Acme (new)") whose campaign waits for approval."""

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Membership, Role, User, Workspace
from campaigns.models import Campaign
from campaigns.scheduling import campaign_schedule
from campaigns.services import campaign_audience_update, campaign_create, campaign_update
from campaigns.starters import starter_get
from contacts.demo import contacts_demo_seed
from contacts.models import Contact, ContactList, Suppression
from contacts.services.suppressions import suppression_add
from sending import dkim
from sending.models import (
    CampaignSend,
    Delivery,
    DeliveryAttempt,
    DkimKey,
    FeedbackEvent,
    InboundMessage,
    IpPool,
    RecordState,
    SendingDomain,
    SendingIp,
)
from sending.providers import provider_of
from sending.selectors import sending_domain_spec
from sending.services.monitoring import dnsbl_zone_presets_install
from sending.services.policy import sending_policy_create
from sending.verp import verp_address

DEMO_DOMAIN = "news.demo-outdoor.example"
DEMO_WARMUP_DAYS_AGO = 4  # the demo IP's warm-up started this many days before the seed


def _demo_results(domain: SendingDomain) -> dict:
    """The records as a check would have found them had they been published."""
    spec = sending_domain_spec(domain=domain)
    results = {}
    for key in spec.keys:
        value = dkim.dkim_record_value(algorithm=key.algorithm, public_b64=key.public_key)
        results[key.record_key] = {
            "key": key.record_key, "label": key.label, "type": "TXT",
            "name": f"{key.selector}._domainkey.{domain.domain}", "expected": value,
            "state": RecordState.PASS, "found": [value], "detail": "", "selector": key.selector,
            "key_bits": 2048,
        }  # fmt: skip
    spf_value = f"v=spf1 include:{settings.SENDING_SPF_DOMAIN} ~all"
    dmarc_value = f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain.domain}; adkim=r; aspf=r"
    mx_value = f"10 {settings.SENDING_INBOUND_HOST}"
    rows = [
        ("spf", "SPF", "TXT", domain.return_path_host, spf_value, {"lookups": 1}),
        ("dmarc", "DMARC", "TXT", f"_dmarc.{domain.domain}", dmarc_value,
         {"policy": "none", "adkim": "r", "aspf": "r",
          "rua": [f"mailto:dmarc-reports@{domain.domain}"]}),
        ("return_path", "Return path (bounces)", "MX", domain.return_path_host, mx_value, {}),
        ("tracking", "Tracking links", "CNAME", domain.tracking_host,
         settings.SENDING_TRACKING_HOST, {}),
    ]  # fmt: skip
    for key, label, rdtype, name, value, extra in rows:
        results[key] = {
            "key": key, "label": label, "type": rdtype, "name": name, "expected": value,
            "state": RecordState.PASS, "found": [value], "detail": "Demo: not looked up.",
            **extra,
        }  # fmt: skip
    return results


@transaction.atomic
def sending_demo_seed(*, workspace: Workspace) -> SendingDomain:
    """Idempotent: a pre-verified demo domain and a shared demo pool on 127.0.0.1, whose
    address is warming up (started DEMO_WARMUP_DAYS_AGO days ago)."""
    pool, _ = IpPool.objects.get_or_create(
        name="Shared demo pool", defaults={"kind": IpPool.Kind.SHARED, "is_default": True}
    )
    started_on = timezone.localdate() - dt.timedelta(days=DEMO_WARMUP_DAYS_AGO)
    SendingIp.objects.get_or_create(
        address="127.0.0.1",
        defaults={
            "pool": pool,
            "helo_hostname": "localhost",
            "bound_host": "",  # a loopback address: every host has it
            "state": SendingIp.State.WARMING,
            "warmup_started_on": started_on,
        },
    )
    SendingIp.objects.filter(address="127.0.0.1", bound_host="localhost").update(bound_host="")
    # A demo seeded before warm-ups existed (made active by the migration, never started).
    SendingIp.objects.filter(address="127.0.0.1", warmup_started_on__isnull=True).update(
        state=SendingIp.State.WARMING, warmup_started_on=started_on
    )
    dnsbl_zone_presets_install()
    domain = _demo_domain(workspace=workspace, name=DEMO_DOMAIN, warmed_up=True)
    sending_demo_feedback_seed(workspace=workspace)
    return domain


def _demo_domain(*, workspace: Workspace, name: str, warmed_up: bool = False) -> SendingDomain:
    """Idempotent: a verified sending domain with an active DKIM key, without DNS; an
    established one (`warmed_up`) or a new one that follows the warm-up schedule."""
    domain = SendingDomain.objects.filter(domain=name).first()
    if domain is None:
        now = timezone.now()
        domain = SendingDomain.objects.create(
            workspace=workspace,
            domain=name,
            return_path_subdomain=settings.SENDING_RETURN_PATH_SUBDOMAIN,
            tracking_subdomain=settings.SENDING_TRACKING_SUBDOMAIN,
            status=SendingDomain.Status.VERIFIED,
            first_verified_at=now,
            last_checked_at=now,
            is_warmed_up=warmed_up,
        )
        pair = dkim.dkim_key_generate(dkim.RSA)
        DkimKey.objects.create(
            workspace=workspace,
            domain=domain,
            selector="esp1",
            algorithm=DkimKey.Algorithm.RSA,
            private_key=pair.private_pem,
            public_key=pair.public_b64,
            status=DkimKey.Status.ACTIVE,
            activated_at=now,
        )
        domain.record_states = _demo_results(domain)
        domain.save(update_fields=["record_states"])
    return domain


# --- Traffic shaping: a new workspace whose campaign waits for approval -------------------

DEMO_NEW_WORKSPACE_SLUG = "acme-new"
DEMO_NEW_DOMAIN = "mail.acme-new.example"
DEMO_NEW_CAMPAIGN_NAME = "First newsletter"
DEMO_NEW_CONTACTS = 5


@transaction.atomic
def sending_demo_new_workspace_seed(*, user: User) -> Campaign:
    """Idempotent: "Acme (new)", a workspace as sign-up creates it (its campaigns wait for
    approval, low quotas), with a verified domain, a few contacts and one campaign
    scheduled now that waits for an operator to approve it in the admin."""
    workspace, created = Workspace.objects.get_or_create(
        slug=DEMO_NEW_WORKSPACE_SLUG,
        defaults={
            "name": "Acme (new)",
            "postal_address": "Acme Inc.\n500 Market Street\nSan Francisco, CA 94105\nUSA",
            "time_zone": "America/Los_Angeles",
            "status": Workspace.Status.ACTIVE,
            "status_changed_at": timezone.now(),
        },
    )
    if created:
        audit_record(workspace=workspace, actor=None, verb="workspace.created", target=workspace)
    # Marked used at creation: sign-in opens the most recently used workspace, never-used
    # ones first, so the demo user keeps landing in the main demo workspaces.
    Membership.objects.get_or_create(
        workspace=workspace,
        user=user,
        defaults={"role": Role.OWNER, "last_used_at": timezone.now()},
    )
    sending_policy_create(workspace=workspace)
    domain = _demo_domain(workspace=workspace, name=DEMO_NEW_DOMAIN)
    existing = Campaign.objects.for_workspace(workspace).filter(name=DEMO_NEW_CAMPAIGN_NAME).first()
    if existing is not None:
        return existing
    contacts_demo_seed(workspace=workspace, user=user, rows=DEMO_NEW_CONTACTS)
    newsletter = ContactList.objects.for_workspace(workspace).get(name="Newsletter")
    campaign = campaign_create(
        workspace=workspace,
        name=DEMO_NEW_CAMPAIGN_NAME,
        starter=starter_get("newsletter"),
        acting_user=user,
    )
    campaign = campaign_update(
        campaign=campaign,
        acting_user=user,
        subject="Hello from Acme",
        preheader="Our first newsletter.",
        from_name="Acme",
        from_email=f"hello@{domain.domain}",
        reply_to="",
        text="",
    )
    campaign_audience_update(
        campaign=campaign,
        include_lists=[newsletter],
        include_segments=[],
        exclude_lists=[],
        exclude_segments=[],
        tags=["Newsletter"],
        acting_user=user,
    )
    return campaign_schedule(campaign=campaign, send_at=None, acting_user=user)


# --- A sent campaign and what came back ---------------------------------------------------

DEMO_SENT_CAMPAIGN_NAME = "Welcome"
DEMO_SENT_SIZE = 10
_RELAY = "mx1.mail-relay.example"

# (index among the recipients, what happened): the rest were simply delivered.
_HARD, _BLOCK, _COMPLAINT = 2, 5, 7
_HARD_DIAGNOSTIC = (
    "smtp; 550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
)
_BLOCK_DIAGNOSTIC = (
    "smtp; 554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using "
    "zen.spamhaus.org; https://www.spamhaus.org/query/ip/198.51.100.7"
)


def _dsn(*, address: str, verp: str, message_id: str, diagnostic: str, status: str) -> bytes:
    """A Postfix delivery status notification, as a relay would send it back."""
    return (
        f"Return-Path: <>\r\n"
        f"From: MAILER-DAEMON@{_RELAY} (Mail Delivery System)\r\n"
        f"To: {verp}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        f"\r\n--B1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"This is the mail system at host {_RELAY}.\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to one or more recipients.\r\n\r\n"
        f"<{address}>: host mx.{address.split('@')[1]} said: "
        f"{diagnostic.removeprefix('smtp; ')}\r\n"
        f"\r\n--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {_RELAY}\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Remote-MTA: dns; mx.{address.split('@')[1]}\r\nDiagnostic-Code: {diagnostic}\r\n"
        f"\r\n--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {message_id}\r\nSubject: Welcome to Demo Outdoor\r\n"
        f"\r\n--B1--\r\n"
    ).encode()


_UNPARSED = (
    b"Return-Path: <>\r\nFrom: postmaster@mail.unknown-isp.example\r\n"
    b"To: bounces+zz9-broken@bounces.news.demo-outdoor.example\r\n"
    b"Subject: Returned mail: see transcript for details\r\n"
    b'Content-Type: multipart/report; boundary="cut\r\n\r\n'
    b"--cut\r\n\xff\xfe The original message was received at Tue, 3 Mar 08:12\r\n"
    b"----- The following addresses had perma"
)


@transaction.atomic
def sending_demo_feedback_seed(*, workspace: Workspace) -> Campaign | None:
    """Idempotent: a "Welcome" campaign sent to ten demo contacts, with a hard bounce, a
    block and a complaint, and two inbound messages in the operators' review list (one
    processed, one not understood). Nothing is seeded before the demo has contacts."""
    existing = (
        Campaign.objects.for_workspace(workspace).filter(name=DEMO_SENT_CAMPAIGN_NAME).first()
    )
    if existing is not None:
        return existing
    contacts = list(
        Contact.objects.for_workspace(workspace)
        .filter(status=Contact.Status.ACTIVE)
        .order_by("pk")[:DEMO_SENT_SIZE]
    )
    if len(contacts) < DEMO_SENT_SIZE:
        return None
    sent_at = timezone.now() - dt.timedelta(days=3)
    campaign = Campaign.objects.create(
        workspace=workspace,
        name=DEMO_SENT_CAMPAIGN_NAME,
        subject="Welcome to Demo Outdoor",
        from_name="Demo Outdoor Co.",
        from_email=f"hello@{DEMO_DOMAIN}",
        html="<h1>Welcome aboard</h1><p>Thanks for joining Demo Outdoor.</p>",
        status=Campaign.Status.SENT,
        tags=["Onboarding"],
    )
    CampaignSend.objects.create(
        workspace=workspace,
        campaign=campaign,
        audience_total=DEMO_SENT_SIZE,
        deliveries_total=DEMO_SENT_SIZE,
        started_at=sent_at,
        finished_at=sent_at + dt.timedelta(minutes=1),
    )
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=campaign,
            contact=contact,
            address=contact.email,
            state=Delivery.State.SENT,
            attempt_count=1,
            last_response=f"250 2.0.0 Ok: queued as 4Rk1x2{index:02d}",
            message_id=f"<welcome.{campaign.pk}.{index}@{DEMO_DOMAIN}>",
            provider=provider_of(contact.email.rpartition("@")[2]),
            source_ip="127.0.0.1",
            created_at=sent_at,
            sent_at=sent_at + dt.timedelta(seconds=index),
            updated_at=sent_at + dt.timedelta(seconds=index),
        )
        for index, contact in enumerate(contacts)
    )
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            workspace=workspace,
            delivery=delivery,
            transport="smtp",
            remote_host=_RELAY,
            smtp_code=250,
            enhanced_code="2.0.0",
            response=delivery.last_response,
            outcome=Delivery.State.SENT,
            started_at=delivery.sent_at,
            finished_at=delivery.sent_at,
        )
        for delivery in deliveries
    )
    _bounce(workspace, deliveries[_HARD], "hard", "mailbox unknown", "5.1.1", _HARD_DIAGNOSTIC)
    # Only the hard bounce's mail is kept: the review list shows one processed, one not.
    _bounce(workspace, deliveries[_BLOCK], "block", "blocklist", "5.7.1", _BLOCK_DIAGNOSTIC, False)
    _complaint(workspace, deliveries[_COMPLAINT])
    InboundMessage.objects.create(
        received_at=sent_at + dt.timedelta(hours=2),
        peer="203.0.113.25:49152",
        helo="mail.unknown-isp.example",
        mail_from="",
        recipients=["bounces+zz9-broken@bounces.news.demo-outdoor.example"],
        size=len(_UNPARSED),
        raw=_UNPARSED,
        status=InboundMessage.Status.UNPARSED,
        kind=InboundMessage.Kind.UNKNOWN,
        summary={"kind": "unknown", "recipients": [], "notes": ["truncated multipart/report"]},
        error="No recipient found and no VERP token matched.",
        attempt_count=1,
        processed_at=sent_at + dt.timedelta(hours=2),
    )
    return campaign


def _bounce(
    workspace: Workspace,
    delivery: Delivery,
    bounce_class: str,
    rule: str,
    status: str,
    text: str,
    stored: bool = True,
) -> None:
    """A bounce that came back as a DSN after the relay had taken the message."""
    at = delivery.sent_at + dt.timedelta(minutes=4)
    diagnostic = text.format(address=delivery.address)
    verp = verp_address(
        delivery_id=delivery.pk, domain=f"{settings.SENDING_RETURN_PATH_SUBDOMAIN}.{DEMO_DOMAIN}"
    )
    raw = _dsn(
        address=delivery.address, verp=verp, message_id=delivery.message_id,
        diagnostic=diagnostic, status=status,
    )  # fmt: skip
    remote_mta = f"mx.{delivery.address.split('@')[1]}"
    found = {"address": delivery.address, "status": status, "class": bounce_class}
    found |= {"diagnostic": diagnostic, "remote_mta": remote_mta}
    inbound = None
    if stored:
        inbound = InboundMessage.objects.create(
            received_at=at,
            peer="192.0.2.25:52011",
            helo=_RELAY,
            mail_from="",
            recipients=[verp],
            size=len(raw),
            raw=raw,
            status=InboundMessage.Status.PROCESSED,
            kind=InboundMessage.Kind.BOUNCE,
            summary={"kind": "bounce", "recipients": [found]},
            attempt_count=1,
            processed_at=at,
            workspace_id=delivery.workspace_id,
            delivery=delivery,
        )
    FeedbackEvent.objects.create(
        workspace_id=delivery.workspace_id,
        delivery=delivery,
        kind=FeedbackEvent.Kind.BOUNCE,
        bounce_class=bounce_class,
        rule=rule,
        status=status,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        address=delivery.address,
        sending_domain=DEMO_DOMAIN,
        source="inbound",
        inbound_message=inbound,
        occurred_at=at,
    )
    delivery.state, delivery.bounce_class, delivery.bounced_at = "bounced", bounce_class, at
    delivery.last_response = diagnostic.removeprefix("smtp; ")[:500]
    delivery.save(update_fields=["state", "bounce_class", "bounced_at", "last_response"])
    if bounce_class == "hard":  # blocks count against the sender, not the contact
        suppression_add(
            workspace=workspace,
            email=delivery.address,
            reason=Suppression.Reason.HARD_BOUNCE,
            source=f"{DEMO_SENT_CAMPAIGN_NAME}: {delivery.last_response}"[:300],
            acting_user=None,
        )
        Contact.objects.filter(pk=delivery.contact_id).update(status=Contact.Status.BOUNCED)


def _complaint(workspace: Workspace, delivery: Delivery) -> None:
    """A mailbox provider's feedback loop report: the recipient pressed "spam"."""
    at = delivery.sent_at + dt.timedelta(hours=5)
    FeedbackEvent.objects.create(
        workspace_id=delivery.workspace_id,
        delivery=delivery,
        kind=FeedbackEvent.Kind.COMPLAINT,
        feedback_type="abuse",
        address=delivery.address,
        sending_domain=DEMO_DOMAIN,
        source="inbound",
        occurred_at=at,
    )
    delivery.complained_at = at
    delivery.save(update_fields=["complained_at"])
    suppression_add(
        workspace=workspace,
        email=delivery.address,
        reason=Suppression.Reason.COMPLAINT,
        source=f"{DEMO_SENT_CAMPAIGN_NAME}: feedback loop report",
        acting_user=None,
    )
    Contact.objects.filter(pk=delivery.contact_id).update(status=Contact.Status.COMPLAINED)
