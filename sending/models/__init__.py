from sending.models.deliveries import CampaignSend, Delivery, DeliveryAttempt
from sending.models.dnsbl import DnsblListing, DnsblZone
from sending.models.domains import DkimKey, DomainCheck, RecordState, SendingDomain
from sending.models.feedback import FeedbackEvent, InboundMessage
from sending.models.ips import IpPool, SendingIp, WorkspacePool
from sending.models.shaping import (
    PlatformSwitch,
    ProviderLimit,
    RecipientDomain,
    SendingPolicy,
    WarmupSchedule,
)

__all__ = [
    "CampaignSend",
    "Delivery",
    "DeliveryAttempt",
    "DkimKey",
    "DnsblListing",
    "DnsblZone",
    "DomainCheck",
    "FeedbackEvent",
    "InboundMessage",
    "IpPool",
    "PlatformSwitch",
    "ProviderLimit",
    "RecipientDomain",
    "RecordState",
    "SendingDomain",
    "SendingIp",
    "SendingPolicy",
    "WarmupSchedule",
    "WorkspacePool",
]
