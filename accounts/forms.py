import zoneinfo

from django import forms
from django.contrib.auth import password_validation

from accounts.models import Membership, Role, Workspace


class LoginForm(forms.Form):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Six-digit code",
        max_length=8,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": "[0-9 ]*",
                "autofocus": True,
            }
        ),
        help_text="From the authenticator app on your phone.",
    )


class SignupForm(forms.Form):
    full_name = forms.CharField(
        label="Your name", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    email = forms.EmailField(
        label="Work email", widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    workspace_name = forms.CharField(
        label="Organisation or brand",
        max_length=120,
        help_text="Your workspace: contacts, campaigns and sending settings live here.",
    )

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(
                    password,
                    user=_Candidate(cleaned.get("email", ""), cleaned.get("full_name", "")),
                )
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class _Candidate:
    """Attributes the similarity validator compares the password against."""

    def __init__(self, email: str, full_name: str):
        self.email, self.full_name = email, full_name


class AcceptInvitationSignupForm(forms.Form):
    full_name = forms.CharField(
        label="Your name", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )

    def __init__(self, *args, email: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_password(self):
        password = self.cleaned_data["password"]
        password_validation.validate_password(password, user=_Candidate(self.email, ""))
        return password


class WorkspaceCreateForm(forms.Form):
    name = forms.CharField(label="Workspace name", max_length=120)


def _time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones())]


class WorkspaceSettingsForm(forms.ModelForm):
    time_zone = forms.ChoiceField(
        choices=_time_zone_choices,
        help_text="Campaigns are scheduled and reported in this time zone.",
    )

    class Meta:
        model = Workspace
        fields = ["name", "postal_address", "time_zone"]
        widgets = {"postal_address": forms.Textarea(attrs={"rows": 4})}
        labels = {"postal_address": "Postal address"}


class InviteForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "name@example.com"}))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)

    def __init__(self, *args, acting: Membership, **kwargs):
        super().__init__(*args, **kwargs)
        if acting.role != Role.OWNER:
            self.fields["role"].choices = [c for c in Role.choices if c[0] != Role.OWNER]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TwoFactorDisableForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
