import os

from django.core.management.base import BaseCommand

from accounts.demo import DEMO_EMAIL, OPERATOR_EMAIL, accounts_demo_seed

DEMO_PASSWORD_DEFAULT = "esp-demo-password"  # noqa: S105 (printed for the local demo)


def demo_password() -> str:
    return os.environ.get("DEMO_PASSWORD") or DEMO_PASSWORD_DEFAULT


class Command(BaseCommand):
    help = "Create (or refresh) the demo workspaces, users and data; safe to run again."

    def handle(self, *args, **options) -> None:
        password = demo_password()
        accounts = accounts_demo_seed(password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: workspaces '{accounts.workspace.slug}' and "
                f"'{accounts.other_workspace.slug}'."
            )
        )
        self.stdout.write(f"  Marketer: {DEMO_EMAIL} / {password}")
        self.stdout.write(
            f"  Operator: {OPERATOR_EMAIL} / {password} (admin at /admin/; two-factor set-up "
            "is asked at first sign-in)"
        )
