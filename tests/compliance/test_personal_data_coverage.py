"""A model with personal fields must be covered by its app's personal_data.py hooks.

"Personal fields" by rule: an EmailField or GenericIPAddressField, or a field whose name
says it holds a person's data. A new model (or field) that matches fails here until its
app ships personal_data.py listing the model in MODELS, with export/erase hooks.
"""

from django.db import models

from compliance.gdpr import personal_data_hooks, project_app_configs

PERSONAL_NAMES = {
    "email", "ip", "ip_address", "user_agent", "first_name", "last_name", "full_name",
    "name_of_person", "raw", "address", "phone", "recipient", "remote_ip", "client_ip",
    "message", "raw_message", "headers", "subject_line",
}  # fmt: skip
PERSONAL_TYPES = (models.EmailField, models.GenericIPAddressField)

# Platform tables whose matching fields are not a person's data, with the reason.
NOT_PERSONAL = {
    # The platform's own sending addresses (machines operators configure), not a person's.
    "sending.SendingIp",
}


def personal_fields(model) -> list[str]:
    return [
        field.name
        for field in model._meta.concrete_fields
        if isinstance(field, PERSONAL_TYPES) or field.name in PERSONAL_NAMES
    ]


def models_with_personal_fields() -> dict[str, list[str]]:
    found = {}
    for config in project_app_configs():
        for model in config.get_models():
            if model._meta.abstract or model._meta.proxy:
                continue
            fields = personal_fields(model)
            if fields:
                found[model._meta.label] = fields
    return found


def test_the_rule_sees_the_known_personal_models():
    found = models_with_personal_fields()
    for label in ("contacts.Contact", "contacts.ConsentRecord", "accounts.AuditEntry",
                  "accounts.User", "compliance.GdprRequest"):  # fmt: skip
        assert label in found, label


def test_every_model_with_personal_fields_is_covered_by_a_hook():
    hooks = personal_data_hooks()
    covered = {
        model._meta.label for hook in hooks.values() for model in getattr(hook, "MODELS", [])
    }
    missing = {
        label: fields
        for label, fields in models_with_personal_fields().items()
        if label not in covered and label not in NOT_PERSONAL
    }
    assert not missing, (
        f"Models with personal fields but no personal_data.py hook covering them: {missing}. "
        "List them in MODELS of <app>/personal_data.py, with export() and erase()."
    )


def test_every_hook_has_the_contract():
    for label, hook in personal_data_hooks().items():
        assert callable(hook.export), label
        assert callable(hook.erase), label
        assert isinstance(getattr(hook, "ERASE_ORDER", None), int), label
        for model in hook.MODELS:
            assert model._meta.app_label == label, (label, model)


def test_the_allow_list_names_real_models():
    from django.apps import apps

    for label in NOT_PERSONAL:
        assert apps.get_model(label)
