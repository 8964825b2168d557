"""Who a campaign goes to: its included lists and segments, minus the excluded ones.

The pre-send checklist, the audience tab and the Delivery snapshot all read this, so
that the number a marketer sees is the number that is sent.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from campaigns.models import Campaign
from contacts.models import Contact, ContactList, Segment, Subscription
from contacts.segments.compiler import segment_contacts
from contacts.suppressions import suppressed_hashes

SUPPRESSION_CHUNK = 5000
# Members of a list, for excluding: pending confirmations are members-to-be.
_MEMBER_STATUSES = [Subscription.Status.SUBSCRIBED, Subscription.Status.PENDING]


@dataclass(frozen=True)
class AudienceCount:
    matching: int  # active contacts the lists and segments select
    suppressed: int  # of those, suppressed here or platform-wide
    sendable: int


def _members(lists: Iterable[ContactList], statuses: list[str]) -> Q | None:
    list_ids = [contact_list.pk for contact_list in lists]
    if not list_ids:
        return None
    subscribed = Subscription.objects.filter(contact_list_id__in=list_ids, status__in=statuses)
    return Q(pk__in=subscribed.values("contact_id"))


def _segment_members(segments: Iterable[Segment]) -> Q | None:
    q = None
    for segment in segments:
        part = Q(pk__in=segment_contacts(segment=segment).values("pk"))
        q = part if q is None else q | part
    return q


def _either(*parts: Q | None) -> Q | None:
    present = [part for part in parts if part is not None]
    if not present:
        return None
    combined = present[0]
    for part in present[1:]:
        combined |= part
    return combined


def audience_candidates(*, campaign: Campaign) -> QuerySet[Contact]:
    """Contacts of any status that the included lists and segments select and no excluded
    one does: the audience before contact status and suppression are applied."""
    included = _either(
        _members(campaign.include_lists.all(), [Subscription.Status.SUBSCRIBED]),
        _segment_members(campaign.include_segments.all()),
    )
    contacts = Contact.objects.for_workspace(campaign.workspace)
    if included is None:
        return contacts.none()
    excluded = _either(
        _members(campaign.exclude_lists.all(), _MEMBER_STATUSES),
        _segment_members(campaign.exclude_segments.all()),
    )
    contacts = contacts.filter(included)
    if excluded is not None:
        contacts = contacts.exclude(excluded)
    return contacts


def audience_contacts(*, campaign: Campaign) -> QuerySet[Contact]:
    """Active contacts subscribed to an included list or matching an included segment, and
    in no excluded list or segment. Suppression is not applied here (it is keyed by hash):
    see `audience_count` and the Delivery snapshot."""
    return audience_candidates(campaign=campaign).filter(status=Contact.Status.ACTIVE)


def audience_count(*, campaign: Campaign) -> AudienceCount:
    """How many contacts the audience selects, and how many of them may be sent to."""
    emails = audience_contacts(campaign=campaign).order_by().values_list("email", flat=True)
    matching = suppressed = 0
    chunk: list[str] = []
    for email in emails.iterator(chunk_size=SUPPRESSION_CHUNK):
        matching += 1
        chunk.append(email)
        if len(chunk) == SUPPRESSION_CHUNK:
            suppressed += len(suppressed_hashes(workspace=campaign.workspace, addresses=chunk))
            chunk = []
    if chunk:
        suppressed += len(suppressed_hashes(workspace=campaign.workspace, addresses=chunk))
    return AudienceCount(matching=matching, suppressed=suppressed, sendable=matching - suppressed)
