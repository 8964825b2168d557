from django.db import models
from django.test.utils import isolate_apps

from accounts.checks import unscoped_models
from accounts.models import WorkspaceOwned


@isolate_apps("contacts")
def test_check_flags_a_model_without_workspace():
    class Loose(models.Model):
        class Meta:
            app_label = "contacts"

    class Scoped(WorkspaceOwned):
        class Meta:
            app_label = "contacts"

    class Listed(models.Model):
        class Meta:
            app_label = "contacts"

    flagged = unscoped_models([Loose, Scoped, Listed], global_models={"contacts.Listed"})
    assert flagged == [Loose]


def test_project_models_all_pass_the_check():
    from django.core import checks

    errors = [e for e in checks.run_checks() if e.id == "accounts.E001"]
    assert errors == []
