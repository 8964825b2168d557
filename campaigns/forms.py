from django import forms

from campaigns.models import Campaign
from campaigns.rendering import TemplateError, compile_template
from campaigns.rendering.engine import Mode
from campaigns.starters import STARTERS

_HEADER_BREAKS = ("\r", "\n")


class CampaignCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    starter = forms.ChoiceField(
        choices=[(starter.key, starter.name) for starter in STARTERS] + [("", "Blank")],
        required=False,
        widget=forms.RadioSelect,
        initial=STARTERS[0].key,
        label="Layout",
    )


class CampaignContentForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = ["subject", "preheader", "from_name", "from_email", "reply_to", "html", "text"]
        labels = {
            "from_name": "From name",
            "from_email": "From address",
            "reply_to": "Reply-To",
            "html": "HTML body",
            "text": "Plain-text body",
        }
        widgets = {
            "html": forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"}),
            "text": forms.Textarea(attrs={"rows": 6}),
            "from_email": forms.EmailInput(),
            "reply_to": forms.EmailInput(),
        }

    def _one_line(self, name: str) -> str:
        value = self.cleaned_data[name]
        if any(mark in value for mark in _HEADER_BREAKS):
            raise forms.ValidationError("Must be one line.")
        return value

    def _template(self, name: str, mode: Mode) -> str:
        value = self.cleaned_data[name]
        try:
            compile_template(value, mode=mode)
        except TemplateError as error:
            raise forms.ValidationError(str(error)) from error
        return value

    def clean_subject(self) -> str:
        self._one_line("subject")
        return self._template("subject", Mode.TEXT)

    def clean_preheader(self) -> str:
        return self._template("preheader", Mode.TEXT)

    def clean_from_name(self) -> str:
        return self._one_line("from_name")

    def clean_html(self) -> str:
        return self._template("html", Mode.HTML)

    def clean_text(self) -> str:
        return self._template("text", Mode.TEXT)
