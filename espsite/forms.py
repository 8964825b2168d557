from django.forms.renderers import TemplatesSetting


class FormRenderer(TemplatesSetting):
    """Django's form templates, with the project's field layout: label, input, help, errors."""

    field_template_name = "components/field.html"
