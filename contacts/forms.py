"""Forms of the contacts pages: they validate shape; services decide and write."""

import csv
import io
import re

from django import forms
from django.core.exceptions import ValidationError

from contacts.models import Contact, ContactList, Field

MAX_SUPPRESSION_UPLOAD_BYTES = 5 * 1024 * 1024
_ADDRESS_SPLIT = re.compile(r"[\s,;]+")


class ContactFilterForm(forms.Form):
    """The contacts table's filter bar (GET); selectors.ContactFilters parses it leniently."""

    q = forms.CharField(
        label="Search",
        required=False,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "Email or name", "autocomplete": "off"}
        ),
    )
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *Contact.Status.choices]
    )
    list = forms.ChoiceField(label="List", required=False)
    created_from = forms.DateField(
        label="Created from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label="Created until", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    sort = forms.ChoiceField(
        label="Sort",
        required=False,
        choices=[
            ("-created", "Newest first"),
            ("created", "Oldest first"),
            ("email", "Email A to Z"),
            ("-email", "Email Z to A"),
        ],
    )

    def __init__(self, *args, lists=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["list"].choices = [("", "Any list"), *((str(cl.pk), cl.name) for cl in lists)]


def attribute_form_field(field: Field) -> forms.Field:
    """A form field for a custom field; the text it gives is parsed by attributes_clean."""
    common = {"label": field.label, "required": False, "help_text": f"Merge tag: {field.key}"}
    if field.type == Field.Type.DATE:
        return forms.CharField(widget=forms.DateInput(attrs={"type": "date"}), **common)
    if field.type == Field.Type.NUMBER:
        return forms.CharField(widget=forms.TextInput(attrs={"inputmode": "decimal"}), **common)
    if field.type == Field.Type.BOOLEAN:
        return forms.ChoiceField(choices=[("", "—"), ("yes", "Yes"), ("no", "No")], **common)
    if field.type == Field.Type.CHOICE:
        return forms.ChoiceField(
            choices=[("", "—"), *((choice, choice) for choice in field.choices)], **common
        )
    return forms.CharField(max_length=2000, **common)


def attribute_initial(field: Field, value) -> str:
    if value is None:
        return ""
    if field.type == Field.Type.BOOLEAN:
        return "yes" if value else "no"
    return str(value)


class ContactForm(forms.Form):
    """Add or edit one contact; custom fields appear as attr_<key>."""

    email = forms.CharField(
        label="Email address",
        max_length=320,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    first_name = forms.CharField(label="First name", max_length=150, required=False)
    last_name = forms.CharField(label="Last name", max_length=150, required=False)
    lists = forms.MultipleChoiceField(
        label="Subscribe to lists",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only with the person's consent: it is recorded as given to you by hand.",
    )

    def __init__(self, *args, fields=(), lists=(), contact: Contact | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.custom_fields = list(fields)
        for field in self.custom_fields:
            self.fields[f"attr_{field.key}"] = attribute_form_field(field)
            if contact is not None and not self.is_bound:
                self.initial[f"attr_{field.key}"] = attribute_initial(
                    field, contact.attributes.get(field.key)
                )
        if contact is not None:
            # The address is the contact's identity; it is not edited here.
            del self.fields["email"]
            del self.fields["lists"]
            self.initial.setdefault("first_name", contact.first_name)
            self.initial.setdefault("last_name", contact.last_name)
        else:
            self.fields["lists"].choices = [(str(cl.pk), cl.name) for cl in lists]
            if not lists:
                del self.fields["lists"]

    def attribute_texts(self) -> dict[str, str]:
        return {
            field.key: self.cleaned_data.get(f"attr_{field.key}") or ""
            for field in self.custom_fields
        }


class ListForm(forms.ModelForm):
    class Meta:
        model = ContactList
        fields = ["name", "description", "opt_in"]
        labels = {"opt_in": "Opt-in"}
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def validate_unique(self):
        """Uniqueness per workspace is the service's to check."""


class FieldForm(forms.Form):
    key = forms.RegexField(
        label="Key",
        max_length=64,
        regex=r"^[a-z][a-z0-9_]*$",
        error_messages={
            "invalid": "Use lower-case letters, digits and underscores, starting with a letter."
        },
        help_text="Used in merge tags and import columns, e.g. plan or signup_date.",
    )
    label = forms.CharField(label="Label", max_length=120)
    type = forms.ChoiceField(label="Type", choices=Field.Type.choices)
    choices = forms.CharField(
        label="Choices",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="For a choice field: one value per line.",
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["key"].disabled = True
            self.fields["key"].help_text = "The key cannot change: merge tags use it."

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("type") == Field.Type.CHOICE and not self.choice_list():
            self.add_error("choices", "List at least one choice.")
        return cleaned

    def choice_list(self) -> list[str]:
        text = self.cleaned_data.get("choices") or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class SuppressionAddForm(forms.Form):
    addresses = forms.CharField(
        label="Addresses",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "one@example.com, two@example.com"}),
        help_text="Paste addresses separated by new lines, commas or spaces.",
    )
    file = forms.FileField(
        label="Or upload a CSV",
        required=False,
        help_text="Every cell that looks like an address is suppressed (5 MB at most).",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv,text/plain"}),
    )

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload and upload.size > MAX_SUPPRESSION_UPLOAD_BYTES:
            raise ValidationError("The file is larger than 5 MB.")
        return upload

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("addresses", "").strip() and not cleaned.get("file"):
            raise ValidationError("Paste addresses or choose a file.")
        return cleaned

    def address_list(self) -> list[str]:
        found = [part for part in _ADDRESS_SPLIT.split(self.cleaned_data["addresses"]) if part]
        upload = self.cleaned_data.get("file")
        if upload:
            text = io.TextIOWrapper(upload.file, encoding="utf-8-sig", errors="replace")
            for row in csv.reader(text):
                found.extend(cell.strip() for cell in row if "@" in cell)
        return found


class BulkActionForm(forms.Form):
    ACTIONS = [
        ("add_to_list", "Add to list"),
        ("remove_from_list", "Remove from list"),
        ("unsubscribe", "Unsubscribe from list"),
        ("delete", "Delete"),
        ("export", "Export to CSV"),
    ]
    action = forms.ChoiceField(choices=ACTIONS)
    # Not "list": that name is the table's list filter, posted alongside.
    target_list = forms.ChoiceField(required=False)
    scope = forms.ChoiceField(
        choices=[("selected", "Selected"), ("all", "All matching")], required=False
    )
    ids = forms.TypedMultipleChoiceField(coerce=int, required=False)

    def __init__(self, *args, lists=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target_list"].choices = [
            ("", "—"),
            *((str(cl.pk), cl.name) for cl in lists),
        ]
        # Ids are checked against the workspace by the queryset that uses them.
        self.fields["ids"].valid_value = lambda value: str(value).isdigit()

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") in ("add_to_list", "remove_from_list", "unsubscribe") and not (
            cleaned.get("target_list")
        ):
            raise ValidationError("Choose a list.")
        if cleaned.get("scope") != "all" and not cleaned.get("ids"):
            raise ValidationError("Select contacts first, or choose all matching contacts.")
        return cleaned
