from django import forms

from accounts.models import Workspace
from contacts.models import ContactImport, ContactList
from contacts.services.imports import mapping_targets


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8, UTF-16 or Windows (Latin-1) text, separated by commas, semicolons or "
        "tabs, with or without a header row.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv,text/plain"}),
    )


class ImportMappingForm(forms.Form):
    """One target per column, the lists to join, and the consent these people gave."""

    lists = forms.ModelMultipleChoiceField(
        queryset=ContactList.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Imported contacts join these lists. Nobody who unsubscribed, bounced or "
        "complained is subscribed again.",
    )
    update_existing = forms.TypedChoiceField(
        label="Contacts that already exist",
        choices=[("1", "Update their names and fields"), ("0", "Leave them as they are")],
        coerce=lambda value: value == "1",
        initial="1",
        widget=forms.RadioSelect,
    )
    consent_basis = forms.CharField(
        label="How did these people agree to hear from you?",
        max_length=300,
        help_text="Recorded as their consent, e.g. 'Ticked the newsletter box at checkout'.",
    )
    consent_source = forms.CharField(
        label="Where was consent collected?",
        max_length=500,
        help_text="e.g. 'Web shop checkout, 2024-2025' or the URL of the form.",
    )

    def __init__(self, *args, contact_import: ContactImport, workspace: Workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.contact_import = contact_import
        self.fields["lists"].queryset = ContactList.objects.for_workspace(workspace)
        targets = mapping_targets(workspace=workspace)
        self.column_fields = []
        for index, column in enumerate(contact_import.columns):
            name = f"column_{index}"
            self.fields[name] = forms.ChoiceField(
                label=column,
                choices=targets,
                required=False,
                initial=contact_import.mapping.get(str(index), ""),
            )
            samples = [row[index] for row in contact_import.preview if index < len(row)]
            self.column_fields.append((self[name], samples))

    def clean(self):
        cleaned = super().clean()
        targets = [
            cleaned.get(f"column_{index}")
            for index in range(len(self.contact_import.columns))
            if cleaned.get(f"column_{index}")
        ]
        if targets.count("email") != 1:
            raise forms.ValidationError("Choose exactly one column for the email address.")
        if len(targets) != len(set(targets)):
            raise forms.ValidationError("Each field can come from one column only.")
        return cleaned

    def start_arguments(self) -> dict:
        data = self.cleaned_data
        return {
            "mapping": {
                str(index): data[f"column_{index}"]
                for index in range(len(self.contact_import.columns))
                if data.get(f"column_{index}")
            },
            "list_ids": [contact_list.pk for contact_list in data["lists"]],
            "update_existing": data["update_existing"],
            "consent_basis": data["consent_basis"],
            "consent_source": data["consent_source"],
        }
