from collections.abc import Iterable

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import models

from accounts.models import WorkspaceOwned

PROJECT_APPS = ("accounts", "contacts", "compliance", "campaigns", "sending", "tracking")


def unscoped_models(
    candidates: Iterable[type[models.Model]], *, global_models: set[str]
) -> list[type[models.Model]]:
    """Models of the project's apps that neither belong to a workspace nor are declared global."""
    return [
        model
        for model in candidates
        if model._meta.app_label in PROJECT_APPS
        and not issubclass(model, WorkspaceOwned)
        and model._meta.label not in global_models
    ]


@checks.register(checks.Tags.models)
def check_models_are_workspace_scoped(app_configs=None, **kwargs) -> list[checks.Error]:
    return [
        checks.Error(
            f"{model._meta.label} neither inherits WorkspaceOwned nor is listed in "
            "settings.GLOBAL_MODELS.",
            hint="Tenant data must carry its workspace; platform-wide tables are listed "
            "explicitly.",
            obj=model,
            id="accounts.E001",
        )
        for model in unscoped_models(apps.get_models(), global_models=set(settings.GLOBAL_MODELS))
    ]
