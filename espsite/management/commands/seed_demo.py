import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from accounts.demo import DEMO_EMAIL, OPERATOR_EMAIL, accounts_demo_seed
from campaigns.demo import campaigns_demo_seed
from compliance.demo import compliance_demo_links
from contacts.demo import contacts_demo_seed
from sending.demo import DEMO_DOMAIN, sending_demo_new_workspace_seed, sending_demo_seed
from tracking.demo import tracking_demo_seed

DEMO_PASSWORD_DEFAULT = "esp-demo-password"  # noqa: S105 (printed for the local demo)


def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT


class Command(BaseCommand):
    help = "Create (or refresh) the demo workspaces, users and data; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="run with DEBUG off (creates a staff account with a published password)",
        )

    def handle(self, *args, force: bool = False, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo creates a staff account whose password is published; it runs with "
                "DEBUG=1 (as `make run` sets it). Pass --force to run it anyway."
            )
        password = demo_password()
        accounts = accounts_demo_seed(password=password)
        contacts_demo_seed(workspace=accounts.workspace, user=accounts.user)
        sending_demo_seed(workspace=accounts.workspace)
        sent = tracking_demo_seed(workspace=accounts.workspace)
        campaign = campaigns_demo_seed(
            workspace=accounts.workspace, user=accounts.user, from_email=f"hello@{DEMO_DOMAIN}"
        )
        awaiting = sending_demo_new_workspace_seed(user=accounts.user)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: workspaces '{accounts.workspace.slug}', "
                f"'{accounts.other_workspace.slug}' and '{awaiting.workspace.slug}'."
            )
        )
        self.stdout.write(f"  Marketer: {DEMO_EMAIL} / {password}")
        self.stdout.write(
            f"  Operator: {OPERATOR_EMAIL} / {password} (admin at /admin/; two-factor set-up "
            "is asked at first sign-in)"
        )
        review = reverse(
            "campaigns:campaign_review",
            kwargs={"workspace_slug": accounts.workspace.slug, "campaign_id": campaign.pk},
        )
        self.stdout.write(
            f"  Campaign ready to send: {review} (test sends land in the local SMTP sink, "
            "var/outbox/)"
        )
        if sent is not None:
            report = reverse(
                "tracking:campaign_report",
                kwargs={"workspace_slug": accounts.workspace.slug, "campaign_id": sent.pk},
            )
            self.stdout.write(
                f"  Report of the sent '{sent.name}' campaign (opens, clicks, machine opens): "
                f"{report}"
            )
        approval = reverse("admin:campaigns_campaign_changelist") + "?approval=awaiting"
        self.stdout.write(
            f"  Awaiting approval: '{awaiting.name}' of {awaiting.workspace.name} (a new "
            f"workspace: low quotas); as the operator, approve it at {approval} (action "
            '"Approve") and it sends to the local SMTP sink'
        )
        links = compliance_demo_links(workspace=accounts.workspace)
        if links:
            self.stdout.write(f"  Try unsubscribing: {links[0]}\n  Preferences: {links[1]}")
