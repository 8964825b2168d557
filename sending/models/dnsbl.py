import ipaddress

from django.db import models
from django.utils import timezone

from sending.models.domains import SendingDomain
from sending.models.ips import SendingIp


class DnsblZone(models.Model):
    """A blocklist zone queried for our IPs (reversed octets) or our domains."""

    class Kind(models.TextChoices):
        IP = "ip", "IP addresses"
        DOMAIN = "domain", "Domains"

    name = models.CharField(max_length=100)
    zone = models.CharField(max_length=253, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    listing_codes = models.JSONField(
        default=list,
        blank=True,
        help_text="Answers that mean 'listed', e.g. [\"127.0.0.2\"]. Any other answer "
        "(such as Spamhaus's 127.255.255.254 for public resolvers) is an error.",
    )
    listing_bitmask = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="For bitmask zones (SURBL): a 127.0.0.x answer is a listing when x & mask.",
    )
    is_enabled = models.BooleanField(default=False)
    is_preset = models.BooleanField(default=False, editable=False)
    last_error = models.CharField(max_length=300, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["kind", "name"]
        verbose_name = "DNSBL zone"

    def __str__(self) -> str:
        return f"{self.name} ({self.zone})"

    def is_listing_code(self, answer: str) -> bool:
        if answer in self.listing_codes:
            return True
        if self.listing_bitmask:
            try:
                address = ipaddress.IPv4Address(answer)
            except ValueError:
                return False
            octets = address.packed
            return octets[:3] == b"\x7f\x00\x00" and bool(octets[3] & self.listing_bitmask)
        return False


class DnsblListing(models.Model):
    """A sending IP or domain found on a zone; open while delisted_at is empty."""

    zone = models.ForeignKey(DnsblZone, on_delete=models.CASCADE, related_name="listings")
    subject = models.CharField(max_length=253, help_text="The IP address or domain listed.")
    sending_ip = models.ForeignKey(
        SendingIp, null=True, blank=True, on_delete=models.CASCADE, related_name="listings"
    )
    sending_domain = models.ForeignKey(
        SendingDomain, null=True, blank=True, on_delete=models.CASCADE, related_name="listings"
    )
    return_codes = models.JSONField(default=list)
    reason = models.TextField(blank=True, help_text="The zone's TXT answer.")
    listed_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    delisted_at = models.DateTimeField(null=True, blank=True)
    is_acknowledged = models.BooleanField(default=False)

    class Meta:
        ordering = ["-listed_at"]
        verbose_name = "blocklist listing"
        constraints = [
            models.UniqueConstraint(
                fields=["zone", "subject"],
                condition=models.Q(delisted_at__isnull=True),
                name="sending_dnsbl_one_open_listing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} on {self.zone.zone}"

    @property
    def is_open(self) -> bool:
        return self.delisted_at is None
