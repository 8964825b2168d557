from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    verbose_name = "Reports"

    def ready(self) -> None:
        from tracking.segments import segment_conditions_register

        segment_conditions_register()
