from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import redirect

from accounts import services
from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Invitation, Membership, User, Workspace


class MembershipInline(admin.TabularInline):
    """Read-only here: membership changes go through Memberships, which audits them."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at", "last_used_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "status", "member_count", "time_zone", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["name", "slug", "membership__user__email"]
    readonly_fields = ["status", "status_reason", "status_changed_at", "created_at", "updated_at"]
    inlines = [MembershipInline]
    actions = ["activate", "suspend"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("membership"))

    @admin.display(ordering="member_count", description="members")
    def member_count(self, workspace: Workspace) -> int:
        return workspace.member_count

    def _set_status(self, request, queryset, status: str) -> None:
        changed = 0
        for workspace in queryset:
            if workspace.status != status:
                services.workspace_set_status(
                    workspace=workspace,
                    status=status,
                    acting_user=request.user,
                    reason=f"by {request.user.email} in the admin",
                )
                changed += 1
        label = Workspace.Status(status).label.lower()
        self.message_user(request, f"{changed} workspace(s) now {label}.", messages.SUCCESS)

    @admin.action(description="Activate selected workspaces (allow sending)")
    def activate(self, request, queryset):
        self._set_status(request, queryset, Workspace.Status.ACTIVE)

    @admin.action(description="Suspend selected workspaces (stop sending)")
    def suspend(self, request, queryset):
        self._set_status(request, queryset, Workspace.Status.SUSPENDED)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Operators' changes go through the same services as members' (last owner kept, audited)."""

    list_display = ["user", "workspace", "role", "created_at", "last_used_at"]
    list_filter = ["role", "workspace__status"]
    search_fields = ["user__email", "workspace__name", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]
    list_select_related = ["user", "workspace"]
    actions = ["delete_selected_memberships"]

    def get_readonly_fields(self, request, obj=None):
        return ["user", "workspace", "created_at", "last_used_at"] if obj else []

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def save_model(self, request, obj, form, change):
        try:
            if change:
                services.member_change_role(
                    membership=Membership.objects.get(pk=obj.pk),
                    role=obj.role,
                    acting_user=request.user,
                    as_operator=True,
                )
            else:
                added = services.member_add(
                    workspace=obj.workspace, user=obj.user, role=obj.role, acting_user=request.user
                )
                obj.pk = added.pk
        except ApplicationError as error:
            raise ValidationError(error.message) from None

    def delete_model(self, request, obj):
        services.member_remove(membership=obj, acting_user=request.user, as_operator=True)

    def changeform_view(self, request, *args, **kwargs):
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return redirect(request.path)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect("admin:accounts_membership_change", object_id)

    @admin.action(description="Remove selected memberships", permissions=["delete"])
    def delete_selected_memberships(self, request, queryset):
        removed = 0
        for membership in queryset.select_related("workspace", "user"):
            try:
                services.member_remove(
                    membership=membership, acting_user=request.user, as_operator=True
                )
                removed += 1
            except ApplicationError as error:
                self.message_user(request, f"{membership}: {error.message}", messages.ERROR)
        if removed:
            self.message_user(request, f"{removed} membership(s) removed.", messages.SUCCESS)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "workspace", "role", "invited_by", "created_at", "accepted_at"]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "workspace__name"]
    list_select_related = ["workspace", "invited_by"]
    readonly_fields = ["created_at", "accepted_at", "accepted_by", "invited_by"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["full_name"]}),
        (
            "Permissions",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]}),
    ]
    readonly_fields = ["last_login", "date_joined"]

    def _refuse_sole_owners(self, request, users) -> bool:
        stranded = [
            f"{user.email} ({', '.join(w.name for w in services.user_sole_ownerships(user=user))})"
            for user in users
            if services.user_sole_ownerships(user=user)
        ]
        if stranded:
            self.message_user(
                request,
                "Not deleted: the only owner of a workspace. Make someone else owner first: "
                + "; ".join(stranded),
                messages.ERROR,
            )
        return bool(stranded)

    def delete_view(self, request, object_id, extra_context=None):
        user = self.get_object(request, object_id)
        if request.method == "POST" and user and self._refuse_sole_owners(request, [user]):
            return redirect("admin:accounts_user_change", object_id)
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request, queryset):
        if not self._refuse_sole_owners(request, list(queryset)):
            super().delete_queryset(request, queryset)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: audit entries are never edited or deleted."""

    list_display = ["created_at", "workspace", "actor_label", "verb", "target_label", "ip"]
    list_filter = ["verb", "created_at"]
    search_fields = ["actor_label", "verb", "target_label", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
