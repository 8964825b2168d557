"""The exactly-once core of the pipeline: the audience snapshot, claims under a lease, and
compare-and-set state changes.

A delivery moves queued → claimed → in_flight → sent | deferred | bounced | failed |
unknown, or skipped. A claim stamps a fresh lease token on a batch of rows
(`FOR UPDATE SKIP LOCKED`, so workers on any host never share a row); every later change
names that token and changes nothing when another worker has since taken the row. A row
is marked in_flight in a committed transaction before its DATA is sent, so a worker that
dies mid-send leaves in_flight rows behind, which the sweep turns into `unknown` (SMTP
cannot tell whether they arrived) instead of sending them again.
"""

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F
from django.utils import timezone

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from campaigns.ab import ab_split
from campaigns.audience import audience_candidates
from campaigns.models import AbTest, Campaign
from contacts.models import Contact
from contacts.suppressions import suppressed_hashes
from sending.models import CampaignSend, Delivery
from sending.providers import providers_for_domains
from sending.warmup import engaged_first_sql

State = Delivery.State
_jitter = secrets.SystemRandom()


@dataclass(frozen=True)
class Claim:
    """A batch of deliveries leased to one worker until `expires_at`."""

    token: uuid.UUID
    deliveries: list[Delivery]
    expires_at: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What a transport said about one delivery."""

    state: str  # one of sent, deferred, bounced, failed, unknown
    transport: str
    remote_host: str = ""
    smtp_code: int | None = None
    enhanced_code: str = ""
    response: str = ""
    bounce_class: str = ""
    started_at: dt.datetime | None = None


_FINAL_OUTCOMES = {State.SENT, State.DEFERRED, State.BOUNCED, State.FAILED, State.UNKNOWN}


def _suppression_match_sql(keys: list[str]) -> str:
    """SQL true when contact c's address is suppressed here or platform-wide.

    The hash is the HMAC of the lower-cased address under each honoured key (as in
    contacts/suppressions.py), computed by pgcrypto so that the snapshot stays set-based.
    """
    hashes = ", ".join("encode(hmac(lower(btrim(c.email)), %s, 'sha256'), 'hex')" for _ in keys)
    return (
        "EXISTS (SELECT 1 FROM contacts_suppression s "  # noqa: S608 - placeholders only
        "WHERE (s.workspace_id = %s OR s.workspace_id IS NULL) "
        f"AND s.address_hash IN ({hashes}))"
    )


@transaction.atomic
def send_start(*, campaign: Campaign) -> CampaignSend:
    """Snapshot the audience into deliveries and mark the campaign as sending.

    Idempotent: a campaign that already has its snapshot gets it back unchanged, so a
    retried start task never doubles the audience.
    """
    campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
    existing = CampaignSend.objects.filter(campaign=campaign).first()
    if existing is not None:
        return existing
    if campaign.status not in (Campaign.Status.SCHEDULED, Campaign.Status.DRAFT):
        raise ApplicationError(f"A {campaign.get_status_display().lower()} campaign cannot start.")

    candidates = audience_candidates(campaign=campaign).order_by()
    counts = dict(
        candidates.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    audience_total = sum(counts.values())
    active_sql, active_params = (
        candidates.filter(status=Contact.Status.ACTIVE)
        .values("id", "email")
        .query.sql_with_params()
    )
    keys = list(settings.SUPPRESSION_HASH_KEYS)
    suppressed = _suppression_match_sql(keys)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM ({active_sql}) c WHERE {suppressed}",  # noqa: S608
            [*active_params, campaign.workspace_id, *keys],
        )
        suppressed_count = cursor.fetchone()[0]
        domains, providers = _audience_providers(cursor, active_sql, active_params)
        cursor.execute(
            "INSERT INTO sending_delivery (workspace_id, campaign_id, contact_id, address, "  # noqa: S608
            "state, skip_reason, attempt_count, bounce_class, last_response, message_id, "
            "provider, created_at, updated_at) "
            "SELECT %s, %s, c.id, c.email, 'queued', '', 0, '', '', '', "
            "COALESCE(m.provider, ''), now(), now() "
            f"FROM ({active_sql}) c "
            "LEFT JOIN unnest(%s::text[], %s::text[]) AS m(domain, provider) "
            f"ON m.domain = {_ADDRESS_DOMAIN_SQL.format('c.email')} "
            f"WHERE NOT {suppressed} ORDER BY c.id "
            "ON CONFLICT DO NOTHING",
            [
                campaign.workspace_id, campaign.pk, *active_params, domains, providers,
                campaign.workspace_id, *keys,
            ],
        )  # fmt: skip
        inserted = cursor.rowcount
    active_count = counts.get(Contact.Status.ACTIVE, 0)
    send = CampaignSend.objects.create(
        workspace_id=campaign.workspace_id,
        campaign=campaign,
        audience_total=audience_total,
        excluded_inactive=audience_total - active_count,
        excluded_suppressed=suppressed_count,
        excluded_duplicate=active_count - suppressed_count - inserted,
        deliveries_total=inserted,
        # Editing the layout later must not change a send under way.
        layout_html=campaign.template.html if campaign.template_id else "",
    )
    ab_test = AbTest.objects.filter(campaign=campaign).first()
    if ab_test is not None:
        _split_for_ab_test(ab_test=ab_test, total=inserted)
    campaign.status = Campaign.Status.SENDING
    campaign.updated_at = timezone.now()
    campaign.save(update_fields=["status", "updated_at"])
    return send


# The domain of an address: what follows its last "@", lower-cased.
_ADDRESS_DOMAIN_SQL = "lower(split_part({}, '@', -1))"


def _audience_providers(cursor, active_sql: str, active_params) -> tuple[list[str], list[str]]:
    """The distinct recipient domains of the audience and their destination providers
    (sending/providers.py): thousands at most, even for millions of contacts.

    The snapshot's INSERT joins them in, so that each row is written once with its
    provider: an UPDATE of the inserted rows rewrote them all and cost twice the INSERT.
    """
    cursor.execute(
        f"SELECT DISTINCT {_ADDRESS_DOMAIN_SQL.format('c.email')} FROM ({active_sql}) c",  # noqa: S608
        active_params,
    )
    domains = [row[0] for row in cursor.fetchall() if row[0]]
    found = providers_for_domains(domains)
    return domains, [found[domain] for domain in domains]


def _split_for_ab_test(*, ab_test: AbTest, total: int) -> None:
    """The test share gets the variants in turn (in a random order of rows); the rest holds
    for the winner."""
    variants = list(ab_test.campaign.variants.order_by("label").values_list("pk", flat=True))
    if not variants:
        return
    # The split the A/B tab showed the marketer (round-robin gives the first variants the
    # extra rows, as ab_split says).
    test_size = ab_split(
        audience_size=total,
        test_share_percent=ab_test.test_share_percent,
        variant_count=len(variants),
    ).test_total
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH ranked AS (SELECT id, row_number() OVER (ORDER BY md5(id::text || %s)) AS rn "
            "FROM sending_delivery WHERE campaign_id = %s) "
            "UPDATE sending_delivery d SET "
            "variant_id = CASE WHEN r.rn <= %s THEN (%s::bigint[])[1 + (r.rn - 1) %% %s] END, "
            "state = CASE WHEN r.rn <= %s THEN 'queued' ELSE 'holding' END "
            "FROM ranked r WHERE d.id = r.id",
            [
                secrets.token_hex(8),
                ab_test.campaign_id,
                test_size,
                variants,
                len(variants),
                test_size,
            ],
        )


def deliveries_claim(
    *,
    campaign_id: int,
    limit: int,
    lease_seconds: int | None = None,
    provider: str | None = None,
    source_ip: str | None = None,
    engaged_first: bool = False,
) -> Claim | None:
    """Lease up to `limit` queued (or due deferred) deliveries of a campaign that is not
    paused. Addresses suppressed since the snapshot are skipped here, not sent.

    Shaped claims (sending/shaping.py) take only rows towards `provider`, stamp the
    `source_ip` they will leave from, and with `engaged_first` take recipients who opened
    or clicked lately before the others (while an IP or domain warms up).
    """
    lease_seconds = lease_seconds or settings.DELIVERY_LEASE_SECONDS
    token = uuid.uuid4()
    # Queued and due deferred rows are looked up apart, each through its own index (the
    # partial index of queued rows, in id order): one condition with an OR makes the
    # planner walk the primary key from the campaign's first row, past every row already
    # sent, so that each claim costs more than the last (O(n) a claim, O(n^2) a send).
    # Rows locked by a branch but not kept by the final LIMIT are free again at commit.
    join, rank, rank_params, order = "", "0", [], "d.id"
    if engaged_first:
        join = "LEFT JOIN contacts_contact c ON c.id = d.contact_id"
        rank, rank_params = engaged_first_sql(contact_alias="c")
        order = f"{rank}, d.id"
    where, where_params = "", []
    if provider is not None:
        where, where_params = "AND d.provider = %s", [provider]
    branch = (
        f"SELECT d.id, {rank} AS rank FROM sending_delivery d {join} "  # noqa: S608
        "WHERE d.campaign_id = %s AND {state} " + where + " "
        f"ORDER BY {order} LIMIT %s FOR UPDATE OF d SKIP LOCKED"
    )
    queued = branch.format(state="d.state = 'queued'")
    due = branch.format(state="d.state = 'deferred' AND d.next_attempt_at <= clock_timestamp()")
    branch_params = [*rank_params, campaign_id, *where_params, *rank_params, limit]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"WITH queued AS ({queued}), due AS ({due}) "  # noqa: S608
            "UPDATE sending_delivery SET state = 'claimed', lease_token = %s, "
            "lease_expires_at = clock_timestamp() + make_interval(secs => %s), "
            "source_ip = %s::inet, updated_at = now() "
            "WHERE id IN (SELECT id FROM (SELECT id, rank FROM queued "
            "UNION ALL SELECT id, rank FROM due) c ORDER BY rank, id LIMIT %s) "
            "AND NOT (SELECT s.is_paused FROM sending_campaignsend s WHERE s.campaign_id = %s) "
            "RETURNING id, lease_expires_at",
            [
                *branch_params, *branch_params, token, lease_seconds, source_ip, limit,
                campaign_id,
            ],
        )  # fmt: skip
        rows = cursor.fetchall()
    if not rows:
        return None
    deliveries = list(
        Delivery.objects.filter(pk__in=[row[0] for row in rows], lease_token=token)
        .select_related("contact")
        .order_by("pk")
    )
    deliveries = _skip_no_longer_sendable(deliveries, token)
    return Claim(token=token, deliveries=deliveries, expires_at=rows[0][1])


def _skip_no_longer_sendable(deliveries: list[Delivery], token: uuid.UUID) -> list[Delivery]:
    if not deliveries:
        return deliveries
    workspace = Workspace.objects.get(pk=deliveries[0].workspace_id)
    suppressed = suppressed_hashes(
        workspace=workspace, addresses=[delivery.address for delivery in deliveries]
    )
    keep, skipped = [], []
    for delivery in deliveries:
        contact = delivery.contact
        if delivery.address.lower() in suppressed:
            skipped.append((delivery, "Suppressed after the snapshot."))
        elif contact is None:
            skipped.append((delivery, "The contact was deleted."))
        elif contact.status != Contact.Status.ACTIVE:
            skipped.append((delivery, f"The contact is {contact.get_status_display().lower()}."))
        else:
            keep.append(delivery)
    for delivery, reason in skipped:
        Delivery.objects.filter(pk=delivery.pk, lease_token=token, state=State.CLAIMED).update(
            state=State.SKIPPED,
            skip_reason=reason,
            lease_token=None,
            lease_expires_at=None,
            updated_at=timezone.now(),
        )
    return keep


def deliveries_mark_in_flight(
    *, delivery_ids: list[int], token: uuid.UUID, message_ids: dict[int, str] | None = None
) -> set[int]:
    """Commit in_flight for the rows this lease still owns; only those may be sent.

    `message_ids`: the Message-ID each message carries, kept on a row that has none yet
    (a retry sends the same one), so that a complaint quoting only it finds its delivery.
    """
    message_ids = message_ids or {}
    ids = list(delivery_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE sending_delivery d SET state = 'in_flight', "
            "attempt_count = d.attempt_count + 1, updated_at = now(), "
            "message_id = CASE WHEN d.message_id = '' THEN COALESCE(m.message_id, '') "
            "ELSE d.message_id END "
            "FROM unnest(%s::bigint[], %s::text[]) AS m(id, message_id) "
            "WHERE d.id = m.id AND d.lease_token = %s AND d.state = 'claimed' "
            "AND d.lease_expires_at > clock_timestamp() RETURNING d.id",
            [ids, [message_ids.get(pk) for pk in ids], token],
        )
        return {row[0] for row in cursor.fetchall()}


def _retry_delay(attempt_count: int) -> dt.timedelta:
    """Exponential back-off with jitter: minutes at first, doubling, capped at 6 hours."""
    base = settings.DELIVERY_FIRST_RETRY_SECONDS * (2 ** max(attempt_count - 1, 0))
    capped = min(base, 6 * 3600)
    return dt.timedelta(seconds=capped * _jitter.uniform(0.8, 1.2))


def _outcome_fields(delivery: Delivery, outcome: Outcome, now: dt.datetime) -> dict:
    """The row's new values for an outcome: a deferral past the lifetime fails (soft)."""
    if outcome.state not in _FINAL_OUTCOMES:
        raise ValueError(f"Not an outcome: {outcome.state}")
    state = outcome.state
    next_attempt_at = None
    if state == State.DEFERRED:
        lifetime = dt.timedelta(seconds=settings.DELIVERY_MAX_LIFETIME_SECONDS)
        next_attempt_at = now + _retry_delay(delivery.attempt_count)
        if next_attempt_at - delivery.created_at > lifetime:
            state, next_attempt_at = State.FAILED, None
    return {
        "state": state,
        "next_attempt_at": next_attempt_at,
        "last_response": outcome.response[:500],
        "bounce_class": outcome.bounce_class
        or (Delivery.BounceClass.SOFT if state == State.FAILED else ""),
        "sent_at": now if state == State.SENT else None,
    }


def delivery_record(*, delivery: Delivery, token: uuid.UUID, outcome: Outcome) -> bool:
    """Record a transport's outcome and its attempt together, if this lease still owns the
    in-flight row; False (and nothing written) when it does not."""
    return bool(deliveries_record(token=token, outcomes=[(delivery, outcome)]))


def deliveries_record(*, token: uuid.UUID, outcomes: list[tuple[Delivery, Outcome]]) -> set[int]:
    """Record many outcomes of one lease in one statement (the UPDATE and the attempts'
    INSERT fed by its RETURNING): the ids recorded. Rows this lease no longer owns in
    flight are left untouched, and get no attempt."""
    if not outcomes:
        return set()
    now = timezone.now()
    values = []
    for delivery, outcome in outcomes:
        fields = _outcome_fields(delivery, outcome, now)
        values.append(
            (
                delivery.pk, fields["state"], fields["next_attempt_at"], fields["last_response"],
                fields["bounce_class"], fields["sent_at"], outcome.transport,
                outcome.remote_host[:253], outcome.smtp_code, outcome.enhanced_code[:12],
                outcome.response[:1000], outcome.started_at or now,
            )
        )  # fmt: skip
    placeholders = ", ".join(
        ["(%s::bigint, %s, %s::timestamptz, %s, %s, %s::timestamptz, %s, %s, %s::smallint, "
         "%s, %s, %s::timestamptz)"] * len(values)
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH v(id, state, next_attempt_at, last_response, bounce_class, sent_at, "  # noqa: S608
            "transport, remote_host, smtp_code, enhanced_code, response, started_at) AS "
            f"(VALUES {placeholders}), "
            "updated AS (UPDATE sending_delivery d SET state = v.state, lease_token = NULL, "
            "lease_expires_at = NULL, next_attempt_at = v.next_attempt_at, "
            "last_response = v.last_response, bounce_class = v.bounce_class, "
            "sent_at = COALESCE(v.sent_at, d.sent_at), updated_at = %s FROM v "
            "WHERE d.id = v.id AND d.lease_token = %s AND d.state = 'in_flight' "
            "RETURNING d.id, d.workspace_id) "
            "INSERT INTO sending_deliveryattempt (workspace_id, delivery_id, transport, "
            "remote_host, smtp_code, enhanced_code, response, outcome, started_at, finished_at) "
            "SELECT u.workspace_id, u.id, v.transport, v.remote_host, v.smtp_code, "
            "v.enhanced_code, v.response, v.state, v.started_at, %s "
            "FROM updated u JOIN v ON v.id = u.id RETURNING delivery_id",
            [*(value for row in values for value in row), now, token, now],
        )
        return {row[0] for row in cursor.fetchall()}


def deliveries_fail_unsent(*, token: uuid.UUID, failures: list[tuple[Delivery, str]]) -> int:
    """Claimed rows that could not even be built (an invalid address, a template that no
    longer compiles): failed, with the reason, never attempted."""
    now = timezone.now()
    failed = 0
    with transaction.atomic():
        for delivery, reason in failures:
            failed += Delivery.objects.filter(
                pk=delivery.pk, lease_token=token, state=State.CLAIMED
            ).update(
                state=State.FAILED,
                lease_token=None,
                lease_expires_at=None,
                last_response=reason[:500],
                updated_at=now,
            )
    return failed


def deliveries_return_unsent(*, delivery_ids: list[int], token: uuid.UUID) -> int:
    """In-flight rows the transport refused before handing anything over (a configuration
    fault): back to the queue, their attempt not counted."""
    return Delivery.objects.filter(
        pk__in=delivery_ids, lease_token=token, state=State.IN_FLIGHT
    ).update(
        state=State.QUEUED,
        lease_token=None,
        lease_expires_at=None,
        attempt_count=F("attempt_count") - 1,
        updated_at=timezone.now(),
    )


def deliveries_release(*, delivery_ids: list[int], token: uuid.UUID) -> int:
    """Give back claimed rows that were not attempted (a paused campaign, a shutdown)."""
    return Delivery.objects.filter(
        pk__in=delivery_ids, lease_token=token, state=State.CLAIMED
    ).update(state=State.QUEUED, lease_token=None, lease_expires_at=None, updated_at=timezone.now())


def leases_sweep() -> dict[str, int]:
    """Expired leases: claimed rows go back to the queue; in-flight rows become unknown
    (or queued again when DELIVERY_RETRY_UNKNOWN says so)."""
    now = timezone.now()
    expired = Delivery.objects.filter(lease_expires_at__lte=now)
    requeued = expired.filter(state=State.CLAIMED).update(
        state=State.QUEUED, lease_token=None, lease_expires_at=None, updated_at=now
    )
    in_flight = expired.filter(state=State.IN_FLIGHT)
    if settings.DELIVERY_RETRY_UNKNOWN:
        unknown = in_flight.update(
            state=State.QUEUED, lease_token=None, lease_expires_at=None, updated_at=now
        )
    else:
        unknown = in_flight.update(
            state=State.UNKNOWN,
            lease_token=None,
            lease_expires_at=None,
            last_response="The worker's lease expired after the message was handed over.",
            updated_at=now,
        )
    return {"requeued": requeued, "unknown": unknown}


def deliveries_retry_now(*, provider: str, acting_user: User) -> int:
    """An operator's "retry now" for one destination provider (say its block has lifted):
    its deferred rows not yet due become due now. updated_at stays, so that warm-up stats
    keep each deferral on the day it happened. Audited; returns the rows changed."""
    now = timezone.now()
    changed = (
        Delivery.objects.filter(state=State.DEFERRED, provider=provider)
        .exclude(next_attempt_at__lte=now)
        .update(next_attempt_at=now)
    )
    audit_record(
        workspace=None,
        actor=acting_user,
        verb="deliveries.retry_now",
        details={"provider": provider, "deliveries": changed},
    )
    return changed
