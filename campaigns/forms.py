from decimal import Decimal

from django import forms

from accounts.errors import ApplicationError
from campaigns import library
from campaigns.models import AbTest, Campaign
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
        fields = [
            "subject",
            "preheader",
            "from_name",
            "from_email",
            "reply_to",
            "template",
            "html",
            "text",
        ]
        labels = {
            "from_name": "From name",
            "from_email": "From address",
            "reply_to": "Reply-To",
            "template": "Layout",
            "html": "HTML body",
            "text": "Plain-text body",
        }
        help_texts = {"template": "The body goes into the layout's {{ content }} slot."}
        widgets = {
            "html": forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"}),
            "text": forms.Textarea(attrs={"rows": 6}),
            "from_email": forms.EmailInput(),
            "reply_to": forms.EmailInput(),
        }

    def __init__(self, *args, workspace=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only the workspace's own layouts can be chosen (another's id is "not a choice").
        layouts = self.fields["template"]
        layouts.queryset = (
            layouts.queryset.filter(workspace=workspace) if workspace else layouts.queryset.none()
        )
        layouts.empty_label = "No layout"

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


class CampaignTrackingForm(forms.ModelForm):
    """The editor's "Tracking" fieldset: saved only when the fieldset was on the page (an
    unticked box is absent from a POST, like a box that was never shown)."""

    MARKER = "tracking_shown"

    class Meta:
        model = Campaign
        fields = ["track_opens", "track_clicks", "web_version"]
        labels = {
            "track_opens": "Track opens",
            "track_clicks": "Track clicks",
            "web_version": "Offer a web version",
        }
        help_texts = {
            "track_opens": "Adds an invisible image that reports when the email is opened. "
            "Privacy features of some mail apps open every message, so opens are estimates.",
            "track_clicks": "Sends links through a redirect that counts clicks. Off: links "
            "go straight to their target and the report shows no clicks.",
            "web_version": "The {{ web_version_url }} link opens the email in a browser. "
            "Off: the link is empty and the page is unavailable.",
        }


class ImageUploadForm(forms.Form):
    # A plain file field: the service identifies the image by its content, inside its limits.
    file = forms.FileField(
        label="Image",
        help_text="JPEG, PNG, GIF or WebP. Metadata such as location is removed.",
        widget=forms.ClearableFileInput(
            attrs={"accept": "image/jpeg,image/png,image/gif,image/webp"}
        ),
    )


class ImageAltForm(forms.Form):
    alt_text = forms.CharField(
        label="Alternative text",
        max_length=300,
        required=False,
        help_text="Shown when mail clients block images, and read out by screen readers.",
    )


class TestSendForm(forms.Form):
    """The addresses are split and checked by campaigns.test_send, which names a bad one."""

    addresses = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "you@example.com"}),
        help_text="Up to 5 addresses, one per line or separated by commas.",
    )
    contact = forms.ChoiceField(required=False, label="With the data of")

    def __init__(self, *args, contacts=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["contact"].choices = [
            ("", "Sample values"),
            *((str(contact.pk), contact.email) for contact in contacts),
        ]


class ScheduleForm(forms.Form):
    """When to send: now, or a date and time in the workspace's time zone."""

    NOW, LATER = "now", "later"

    when = forms.ChoiceField(
        choices=[(NOW, "Send now"), (LATER, "Schedule")],
        widget=forms.RadioSelect,
        initial=NOW,
        label="When",
    )
    date = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    time = forms.TimeField(
        required=False, widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    )

    def __init__(self, *args, time_zone: str = "UTC", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["date"].label = f"Date ({time_zone})"
        self.fields["time"].label = f"Time ({time_zone})"

    def clean(self) -> dict:
        data = super().clean()
        if data.get("when") == self.LATER:
            for name in ("date", "time"):
                if not data.get(name) and name not in self.errors:
                    self.add_error(name, "Required to schedule.")
        return data


class CampaignAudienceForm(forms.Form):
    """The audience tab: lists and segments in and out, and comma-separated tags."""

    include_lists = forms.ModelMultipleChoiceField(queryset=None, required=False)
    include_segments = forms.ModelMultipleChoiceField(queryset=None, required=False)
    exclude_lists = forms.ModelMultipleChoiceField(queryset=None, required=False)
    exclude_segments = forms.ModelMultipleChoiceField(queryset=None, required=False)
    tags = forms.CharField(
        required=False,
        max_length=1000,
        help_text="Separate tags with commas, e.g. newsletter, spring.",
    )

    def __init__(self, *args, lists, segments, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["include_lists"].queryset = self.fields["exclude_lists"].queryset = lists
        self.fields["include_segments"].queryset = segments
        self.fields["exclude_segments"].queryset = segments

    def clean_tags(self) -> list[str]:
        return self.cleaned_data["tags"].split(",")


AB_VARIANT_SLOTS = 5


class AbTestForm(forms.Form):
    """The A/B tab: up to five variant rows; rows left empty are skipped."""

    enabled = forms.BooleanField(required=False, label="Test this campaign with variants")
    test_share_percent = forms.IntegerField(
        min_value=1,
        max_value=50,
        initial=20,
        label="Test share (% of the audience)",
        help_text="1-50%. The variants split this share evenly.",
    )
    metric = forms.ChoiceField(
        choices=AbTest.Metric.choices, initial=AbTest.Metric.OPENS, label="Winner by"
    )
    wait_hours = forms.DecimalField(
        min_value=Decimal("0.5"),
        max_value=168,
        decimal_places=2,
        initial=4,
        label="Wait before picking the winner (hours)",
        help_text="From half an hour to 7 days (168 hours).",
        widget=forms.NumberInput(attrs={"step": "0.5"}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for slot in range(1, AB_VARIANT_SLOTS + 1):
            label = chr(ord("A") + slot - 1)
            self.fields[f"subject_{slot}"] = forms.CharField(
                required=False, max_length=300, label=f"Variant {label} subject"
            )
            self.fields[f"html_{slot}"] = forms.CharField(
                required=False,
                label=f"Variant {label} HTML body (optional)",
                help_text="Blank: the campaign's own body.",
                widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "code"}),
            )

    def wants_test(self) -> bool:
        """Whether the toggle is on, read even when other fields are invalid."""
        return bool(self["enabled"].data)

    def variant_slots(self) -> list[tuple[str, forms.BoundField, forms.BoundField]]:
        return [
            (chr(ord("A") + slot - 1), self[f"subject_{slot}"], self[f"html_{slot}"])
            for slot in range(1, AB_VARIANT_SLOTS + 1)
        ]

    def variant_rows(self) -> list[tuple[int, dict]]:
        """(slot, {subject, html}) of the rows that hold anything, in slot order."""
        rows = []
        for slot in range(1, AB_VARIANT_SLOTS + 1):
            subject = self.cleaned_data.get(f"subject_{slot}", "")
            html = self.cleaned_data.get(f"html_{slot}", "")
            if subject or html:
                rows.append((slot, {"subject": subject, "html": html}))
        return rows

    def add_design_errors(self, errors: dict[str, str], slots: list[int]) -> None:
        """Place the service's problems (keyed `variants.<index>.<part>`) next to their fields."""
        simple = {"test_share_percent": "test_share_percent", "metric": "metric"}
        for key, message in errors.items():
            parts = key.split(".")
            if key in simple:
                self.add_error(simple[key], message)
            elif key == "wait_minutes":
                self.add_error("wait_hours", message)
            elif len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(slots):
                self.add_error(f"{parts[2]}_{slots[int(parts[1])]}", message)
            else:
                self.add_error(None, message)


class TemplateForm(forms.Form):
    """A layout of the template library; the service checks the HTML again on save."""

    name = forms.CharField(max_length=120)
    html = forms.CharField(
        label="HTML",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 24, "spellcheck": "false", "class": "code"}),
        help_text="A whole email document with one {{ content }} slot for the campaign's body.",
    )

    def clean_html(self) -> str:
        value = self.cleaned_data["html"]
        try:
            library.template_html_check(html=value)
        except ApplicationError as error:
            raise forms.ValidationError(error.message) from error
        return value


class TemplateStarterForm(forms.Form):
    """ "Use this layout": copy a built-in starter into the workspace."""

    starter = forms.ChoiceField(choices=[(starter.key, starter.name) for starter in STARTERS])
