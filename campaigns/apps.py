from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from accounts.dashboard import DashboardStep, dashboard_steps
        from campaigns.models import Campaign

        dashboard_steps.register(
            DashboardStep(
                order=50,
                key="campaign",
                title="Write your first campaign",
                text="Start from a template, preview it for a real contact, send a test.",
                url_name="campaigns:campaign_list",
                action="Go to campaigns",
                is_done=lambda workspace: Campaign.objects.for_workspace(workspace).exists(),
            )
        )
