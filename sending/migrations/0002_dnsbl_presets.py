"""The well-known blocklist zones, offered as presets: all disabled until an operator
enables them, so a fresh install queries no blocklist."""

from django.db import migrations

PRESETS = [
    ("Spamhaus ZEN", "zen.spamhaus.org", "ip",
     [f"127.0.0.{n}" for n in (2, 3, 4, 5, 6, 7, 9, 10, 11)], None),
    ("Spamhaus DBL", "dbl.spamhaus.org", "domain",
     [f"127.0.1.{n}" for n in (2, 4, 5, 6, 102, 103, 104, 105, 106)], None),
    ("Barracuda", "b.barracudacentral.org", "ip", ["127.0.0.2"], None),
    ("SpamCop", "bl.spamcop.net", "ip", ["127.0.0.2"], None),
    ("SURBL multi", "multi.surbl.org", "domain", [], 8 | 16 | 64 | 128),
]  # fmt: skip


def add_presets(apps, schema_editor):
    DnsblZone = apps.get_model("sending", "DnsblZone")
    for name, zone, kind, codes, bitmask in PRESETS:
        DnsblZone.objects.get_or_create(
            zone=zone,
            defaults={
                "name": name,
                "kind": kind,
                "listing_codes": codes,
                "listing_bitmask": bitmask,
                "is_enabled": False,
                "is_preset": True,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("sending", "0001_initial")]

    operations = [migrations.RunPython(add_presets, migrations.RunPython.noop)]
