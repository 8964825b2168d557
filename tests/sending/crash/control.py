"""The Django side of the crash tests, run as a subprocess against the stack's own database
(DATABASE_URL and REDIS_URL in its environment), so that the test process never joins
pytest-django's database to the cluster it restarts:

    python -m tests.sending.crash.control setup --recipients 5000   # {"campaign_id": 7}
    python -m tests.sending.crash.control start                     # {"started": [7]}
    python -m tests.sending.crash.control pause 7
    python -m tests.sending.crash.control resume 7

Each command calls the services (or the task body) the product calls, and prints one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DOMAIN = "news.crash.example"


def _setup(recipients: int) -> dict:
    """A workspace with a verified sending domain and a campaign scheduled for now, to
    `recipients` contacts (reader<i>@mail<i % 7>.test)."""
    from django.conf import settings
    from django.utils import timezone

    from campaigns.models import Campaign
    from contacts.models import Contact, Subscription
    from sending.dnsserver import DnsServer
    from sending.models import SendingDomain
    from sending.services.domains import sending_domain_add, sending_domain_check
    from tests.factories import ContactListFactory, WorkspaceFactory
    from tests.sending.conftest import publish

    workspace = WorkspaceFactory(postal_address="1 Harbour Street, Bristol")
    domain = sending_domain_add(workspace=workspace, domain=DOMAIN, acting_user=None)
    # Verification needs DNS once: a loopback server of this process only.
    server = DnsServer().start()
    try:
        settings.DNS_RESOLVERS = [server.address]
        settings.DNS_TIMEOUT_SECONDS, settings.DNS_RETRIES = 0.5, 1
        publish(server, domain)
        sending_domain_check(domain=domain)
    finally:
        server.stop()
    domain.refresh_from_db()
    if domain.status != SendingDomain.Status.VERIFIED:
        raise SystemExit(f"The domain did not verify: {domain.record_states}")
    domain.is_warmed_up = True  # an established domain: no new-domain caps
    domain.save(update_fields=["is_warmed_up"])
    contact_list = ContactListFactory(workspace=workspace)
    contacts = Contact.objects.bulk_create(
        (
            Contact(workspace=workspace, email=f"reader{i}@mail{i % 7}.test", first_name=f"R{i}")
            for i in range(recipients)
        ),
        batch_size=1000,
    )
    Subscription.objects.bulk_create(
        (
            Subscription(workspace=workspace, contact=contact, contact_list=contact_list)
            for contact in contacts
        ),
        batch_size=1000,
    )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Crash",
        subject="Hi {{ first_name }}",
        from_name="Shop",
        from_email=f"hello@{DOMAIN}",
        html=(
            '<p>Hello {{ first_name }}</p><p><a href="https://shop.example/sale">Sale</a></p>'
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ postal_address }}</p>'
        ),
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now(),
    )
    campaign.include_lists.add(contact_list)
    return {"campaign_id": campaign.pk}


def _start() -> dict:
    """What beat's campaigns-start-due does, now rather than at its next tick."""
    from sending.tasks import campaigns_start_due_task

    return {"started": campaigns_start_due_task()}


def _pause(campaign_id: int) -> dict:
    from campaigns.models import Campaign
    from sending.pipeline import campaign_pause

    campaign_pause(campaign=Campaign.objects.get(pk=campaign_id), acting_user=None)
    return {"paused": campaign_id}


def _resume(campaign_id: int) -> dict:
    """What the Resume button does: resume, then set workers going."""
    from campaigns.models import Campaign
    from sending.pipeline import campaign_resume
    from sending.tasks import campaign_send_fan_out

    campaign = Campaign.objects.get(pk=campaign_id)
    campaign_resume(campaign=campaign, acting_user=None)
    campaign_send_fan_out(campaign.pk)
    return {"resumed": campaign_id}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup")
    setup.add_argument("--recipients", type=int, required=True)
    commands.add_parser("start")
    for name in ("pause", "resume"):
        commands.add_parser(name).add_argument("campaign_id", type=int)
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "espsite.settings")
    import django

    django.setup()
    from espsite.celery import app  # noqa: F401 - tasks publish through the project's app

    if args.command == "setup":
        answer = _setup(args.recipients)
    elif args.command == "start":
        answer = _start()
    elif args.command == "pause":
        answer = _pause(args.campaign_id)
    else:
        answer = _resume(args.campaign_id)
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
