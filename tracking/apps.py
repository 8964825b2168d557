from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Reports"

    def ready(self) -> None:
        from tracking.segments import segment_conditions_register

        segment_conditions_register()

        # The dashboard's deliverability panel (tracking/dashboard.py), loaded by URL name.
        from accounts.dashboard import dashboard_panels

        dashboard_panels.register("tracking:dashboard_panel")
