from django import forms

from sending.domain_names import InvalidDomain, domain_normalize


class DomainAddForm(forms.Form):
    domain = forms.CharField(
        label="Domain you send from",
        max_length=300,
        help_text="The domain of your From addresses, e.g. news.example.com. "
        "International names are fine.",
        widget=forms.TextInput(attrs={"placeholder": "news.example.com", "autocomplete": "off"}),
    )

    def clean_domain(self) -> str:
        try:
            return domain_normalize(self.cleaned_data["domain"])
        except InvalidDomain as error:
            raise forms.ValidationError(str(error)) from None
