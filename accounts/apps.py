from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and workspaces"

    def ready(self) -> None:
        from accounts import checks  # noqa: F401  (registers the system checks)
        from accounts.dashboard import DashboardStep, dashboard_steps
        from accounts.models import Membership
        from accounts.selectors import invitation_list_open

        dashboard_steps.register(
            DashboardStep(
                order=10,
                key="postal_address",
                title="Add your postal address",
                text="Every campaign's footer carries it; the law requires it.",
                url_name="accounts:workspace_settings",
                action="Open settings",
                is_done=lambda workspace: bool(workspace.postal_address),
            )
        )
        dashboard_steps.register(
            DashboardStep(
                order=20,
                key="team",
                title="Invite your team",
                text="Editors write campaigns, viewers read reports, admins manage the workspace.",
                url_name="accounts:members",
                action="Invite members",
                is_done=lambda workspace: (
                    Membership.objects.for_workspace(workspace).count() > 1
                    or invitation_list_open(workspace=workspace).exists()
                ),
            )
        )
