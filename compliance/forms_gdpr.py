from django import forms

from compliance.models import GdprRequest


class GdprRequestForm(forms.Form):
    email = forms.CharField(label="Email address", max_length=320)
    kind = forms.ChoiceField(
        label="Request",
        choices=GdprRequest.Kind.choices,
        widget=forms.RadioSelect,
        initial=GdprRequest.Kind.EXPORT,
    )
    confirm_erasure = forms.BooleanField(
        label="I understand an erasure cannot be undone.", required=False
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("kind") == GdprRequest.Kind.ERASURE and not cleaned.get("confirm_erasure"):
            self.add_error("confirm_erasure", "Tick this to erase the person's data.")
        return cleaned
