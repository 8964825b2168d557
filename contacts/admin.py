"""Operators' view of contacts: the platform-wide suppression list is managed here."""

from django import forms
from django.contrib import admin

from accounts.audit import audit_record
from contacts.addresses import InvalidAddress, normalize_email
from contacts.models import ConsentRecord, Contact, ContactList, Field, Suppression
from contacts.suppressions import address_hash


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["email", "workspace", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["email"]
    list_select_related = ["workspace"]
    autocomplete_fields = ["workspace"]
    readonly_fields = [
        "created_at",
        "updated_at",
        "last_sent_at",
        "last_opened_at",
        "last_clicked_at",
    ]
    # A million rows: no full count under the changelist.
    show_full_result_count = False


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "opt_in", "created_at"]
    list_filter = ["opt_in"]
    search_fields = ["name", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace"]
    autocomplete_fields = ["workspace"]


@admin.register(Field)
class FieldAdmin(admin.ModelAdmin):
    list_display = ["label", "key", "type", "workspace"]
    list_filter = ["type"]
    search_fields = ["key", "label", "workspace__name"]
    list_select_related = ["workspace"]
    autocomplete_fields = ["workspace"]


class PlatformWideFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("platform", "Platform-wide"), ("workspace", "One workspace")]

    def queryset(self, request, queryset):
        if self.value() == "platform":
            return queryset.filter(workspace__isnull=True)
        if self.value() == "workspace":
            return queryset.filter(workspace__isnull=False)
        return queryset


class SuppressionAddForm(forms.ModelForm):
    email = forms.CharField(label="Address", max_length=320)

    class Meta:
        model = Suppression
        fields = ["workspace", "email", "reason", "source"]
        help_texts = {"workspace": "Leave empty for the platform-wide list."}

    def clean_email(self):
        try:
            return normalize_email(self.cleaned_data["email"])
        except InvalidAddress as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self):
        cleaned = super().clean()
        email = cleaned.get("email")
        if email:
            digest = address_hash(email)
            self.instance.address_hash = digest
            exists = Suppression.objects.filter(
                workspace=cleaned.get("workspace"), address_hash=digest
            ).exists()
            if exists:
                raise forms.ValidationError("This address is already suppressed there.")
        return cleaned

    def validate_unique(self):
        """Checked in clean(): the hash is computed from the address there."""


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "workspace", "reason", "source", "created_at"]
    list_filter = [PlatformWideFilter, "reason"]
    search_fields = ["email", "workspace__name"]
    list_select_related = ["workspace"]
    autocomplete_fields = ["workspace"]
    readonly_fields = ["workspace", "email", "address_hash", "reason", "source", "created_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SuppressionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["workspace", "email", "reason", "source"]
        return self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(
            workspace=obj.workspace,
            actor=request.user,
            verb="suppression.added",
            target=obj,
            details={"email": obj.email, "reason": obj.reason, "by": "operator"},
        )

    def delete_model(self, request, obj):
        self._audit_removed(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for suppression in queryset:
            self._audit_removed(request, suppression)
        super().delete_queryset(request, queryset)

    def _audit_removed(self, request, suppression: Suppression) -> None:
        audit_record(
            workspace=suppression.workspace,
            actor=request.user,
            verb="suppression.removed",
            target=suppression,
            details={"email": suppression.email, "reason": suppression.reason, "by": "operator"},
        )


@admin.register(ConsentRecord)
class ConsentRecordAdmin(admin.ModelAdmin):
    """Proof of consent: read-only for everyone, operators included."""

    list_display = ["created_at", "email", "workspace", "action", "method", "contact_list"]
    list_filter = ["action", "method"]
    search_fields = ["email"]
    list_select_related = ["workspace", "contact_list"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
