from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count

from accounts import services
from accounts.models import AuditEntry, Invitation, Membership, User, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at", "last_used_at"]
    readonly_fields = ["created_at", "last_used_at"]


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
    list_display = ["user", "workspace", "role", "created_at", "last_used_at"]
    list_filter = ["role", "workspace__status"]
    search_fields = ["user__email", "workspace__name", "workspace__slug"]
    autocomplete_fields = ["user", "workspace"]
    list_select_related = ["user", "workspace"]


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
