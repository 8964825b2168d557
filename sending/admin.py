import json

from csp.decorators import csp_update
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from campaigns.models import Campaign
from sending import outbox, policy, warmup
from sending.models import (
    CampaignSend,
    Delivery,
    DeliveryAttempt,
    DkimKey,
    DnsblListing,
    DnsblZone,
    FeedbackEvent,
    InboundMessage,
    IpPool,
    PlatformSwitch,
    ProviderLimit,
    RecipientDomain,
    SendingDomain,
    SendingIp,
    SendingPolicy,
    WarmupSchedule,
    WorkspacePool,
)
from sending.services import monitoring
from sending.services import policy as policy_services
from sending.views import operator


class SendingIpInline(admin.TabularInline):
    model = SendingIp
    extra = 0
    fields = ["address", "helo_hostname", "bound_host", "is_active", "ptr_state", "ptr_checked_at"]
    readonly_fields = ["ptr_state", "ptr_checked_at"]


@admin.register(IpPool)
class IpPoolAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "transport", "dedicated_workspace", "is_default", "created_at"]
    list_filter = ["kind", "transport", "is_default"]
    search_fields = ["name", "dedicated_workspace__name"]
    autocomplete_fields = ["dedicated_workspace"]
    inlines = [SendingIpInline]


@admin.register(WorkspacePool)
class WorkspacePoolAdmin(admin.ModelAdmin):
    list_display = ["workspace", "pool", "assigned_at"]
    autocomplete_fields = ["workspace"]
    list_select_related = ["workspace", "pool"]


@admin.register(SendingIp)
class SendingIpAdmin(admin.ModelAdmin):
    """Operators' view of sending IPs, with forward-confirmed reverse DNS."""

    list_display = [
        "address", "pool", "helo_hostname", "bound_host", "is_active",
        "ptr_state", "ptr_names", "ptr_detail", "ptr_checked_at",
    ]  # fmt: skip
    list_filter = ["pool", "is_active", "ptr_state"]
    search_fields = ["address", "helo_hostname", "bound_host"]
    readonly_fields = ["ptr_state", "ptr_names", "ptr_detail", "ptr_checked_at", "created_at"]
    actions = ["check_ptr"]

    @admin.action(description="Check PTR / forward-confirmed reverse DNS now")
    def check_ptr(self, request, queryset):
        for sending_ip in queryset:
            monitoring.sending_ip_ptr_check(sending_ip=sending_ip)
        self.message_user(request, f"Checked {queryset.count()} address(es).", messages.SUCCESS)


@admin.register(DnsblZone)
class DnsblZoneAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "zone",
        "kind",
        "is_enabled",
        "is_preset",
        "last_error",
        "last_error_at",
    ]
    list_filter = ["kind", "is_enabled", "is_preset"]
    readonly_fields = ["last_error", "last_error_at", "created_at"]
    actions = ["enable", "disable", "check_now"]

    @admin.action(description="Enable selected zones")
    def enable(self, request, queryset):
        queryset.update(is_enabled=True)

    @admin.action(description="Disable selected zones")
    def disable(self, request, queryset):
        queryset.update(is_enabled=False)

    @admin.action(description="Check all sending IPs and domains now (enabled zones)")
    def check_now(self, request, queryset):
        new = monitoring.dnsbl_check_all()
        self.message_user(
            request, f"{len(new)} new listing(s).", messages.WARNING if new else messages.SUCCESS
        )


@admin.register(DnsblListing)
class DnsblListingAdmin(admin.ModelAdmin):
    list_display = [
        "subject", "zone", "return_codes", "reason", "listed_at", "last_seen_at",
        "delisted_at", "is_acknowledged",
    ]  # fmt: skip
    list_filter = ["is_acknowledged", ("delisted_at", admin.EmptyFieldListFilter), "zone"]
    search_fields = ["subject", "reason"]
    list_select_related = ["zone"]
    readonly_fields = [
        "zone", "subject", "sending_ip", "sending_domain", "return_codes", "reason",
        "listed_at", "last_seen_at", "delisted_at",
    ]  # fmt: skip
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge selected listings")
    def acknowledge(self, request, queryset):
        queryset.update(is_acknowledged=True)

    def has_add_permission(self, request) -> bool:
        return False


class DkimKeyInline(admin.TabularInline):
    model = DkimKey
    extra = 0
    fields = ["selector", "algorithm", "status", "created_at", "activated_at", "retire_after"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SendingDomain)
class SendingDomainAdmin(admin.ModelAdmin):
    list_display = ["domain", "workspace", "status", "last_checked_at", "first_verified_at"]
    list_filter = ["status"]
    search_fields = ["domain", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace"]
    readonly_fields = [
        "workspace", "domain", "status", "record_states", "last_checked_at",
        "first_verified_at", "broken_at", "created_by", "created_at",
    ]  # fmt: skip
    fields = [*readonly_fields, "return_path_subdomain", "tracking_subdomain"]
    inlines = [DkimKeyInline]

    def has_add_permission(self, request) -> bool:
        return False


# The operators' outbox: the mail the local sink of `make run` stored. It has no model, so
# its two pages are plain views added to the admin site's URLs (behind admin_view: staff
# only, after two-factor sign-in) and listed under Sending on the admin index.


@require_GET
def outbox_list(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Outbox",
        "page_obj": outbox.outbox_message_list(page=request.GET.get("page")),
        "sink_address": f"127.0.0.1:{settings.SMTP_SINK_PORT}",
        "directory": outbox.outbox_directory(),
    }
    return TemplateResponse(request, "admin/sending/outbox_list.html", context)


# The HTML part is shown in a sandboxed srcdoc iframe, which inherits this page's policy:
# inline styles let the message look as it will; scripts stay off (sandbox and CSP both).
@csp_update({"style-src": ["'unsafe-inline'"]})
@require_GET
def outbox_detail(request: HttpRequest, message_id: str) -> HttpResponse:
    message = outbox.outbox_message_get(message_id=message_id)
    context = {
        **admin.site.each_context(request),
        "title": message.subject or "(no subject)",
        "message": message,
    }
    return TemplateResponse(request, "admin/sending/outbox_detail.html", context)


def _with_outbox_urls(get_urls):
    def urls():
        return [
            path("sending/outbox/", admin.site.admin_view(outbox_list), name="sending_outbox_list"),
            path(
                "sending/outbox/<str:message_id>/",
                admin.site.admin_view(outbox_detail),
                name="sending_outbox_detail",
            ),
            path(
                "sending/ips-today/",
                admin.site.admin_view(operator.sending_ips_today_view),
                name="sending_ips_today",
            ),
            path(
                "sending/mail-queue/",
                admin.site.admin_view(operator.mail_queue_view),
                name="sending_mail_queue",
            ),
            path(
                "sending/mail-queue/retry-now/",
                admin.site.admin_view(operator.mail_queue_retry_now),
                name="sending_mail_queue_retry_now",
            ),
            *get_urls(),
        ]

    return urls


def _with_outbox_entry(get_app_list):
    def app_list(request, app_label=None):
        apps = get_app_list(request, app_label)
        for app in apps:
            if app["app_label"] == "sending":
                for name, url_name in [
                    ("Outbox", "sending_outbox_list"),
                    ("Sending IPs: today", "sending_ips_today"),
                    ("Mail queue", "sending_mail_queue"),
                ]:
                    app["models"].append(
                        {
                            "model": None,
                            "name": name,
                            "object_name": name.replace(" ", "").replace(":", ""),
                            "perms": {"view": True},
                            "admin_url": reverse(f"admin:{url_name}"),
                            "add_url": None,
                            "view_only": True,
                        }
                    )
                app["models"].sort(key=lambda entry: entry["name"])
        return apps

    return app_list


admin.site.get_urls = _with_outbox_urls(admin.site.get_urls)
admin.site.get_app_list = _with_outbox_entry(admin.site.get_app_list)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: operators read them; the pipeline alone writes them."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(CampaignSend)
class CampaignSendAdmin(ReadOnlyAdmin):
    list_display = [
        "campaign",
        "workspace",
        "deliveries_total",
        "excluded_suppressed",
        "excluded_inactive",
        "is_paused",
        "paused_by_breaker",
        "batch_number",
        "started_at",
        "finished_at",
    ]
    # Operators look for campaigns the circuit breaker paused (pause_reason says why).
    list_filter = ["paused_by_breaker", "is_paused"]
    search_fields = ["campaign__name", "workspace__name"]
    list_select_related = ["campaign", "workspace"]


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["started_at", "transport", "remote_host", "smtp_code", "enhanced_code", "response"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["address", "campaign", "state", "bounce_class", "attempt_count", "updated_at"]
    list_filter = ["state", "bounce_class"]
    search_fields = ["address", "campaign__name"]
    list_select_related = ["campaign"]
    show_full_result_count = False  # millions of rows: no COUNT(*) per page
    inlines = [DeliveryAttemptInline]


# --- What came back: stored inbound mail and the feedback events read from it ------------

# The raw message is shown as text, up to this many bytes: enough to read a DSN's parts.
RAW_SHOWN_BYTES = 64 * 1024


class InboundStatusFilter(admin.SimpleListFilter):
    """Opens on the messages that need a look (not understood, or failed); "All" shows all."""

    title = "status"
    parameter_name = "status"
    REVIEW = ("unparsed", "failed")

    def lookups(self, request, model_admin):
        return [("review", "To review (not understood, failed)"), *InboundMessage.Status.choices,
                ("all", "All")]  # fmt: skip

    def choices(self, changelist):
        current = self.value() or "review"
        for value, label in self.lookup_choices:
            yield {
                "selected": current == value,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }

    def queryset(self, request, queryset):
        value = self.value() or "review"
        if value == "review":
            return queryset.filter(status__in=self.REVIEW)
        if value in InboundMessage.Status.values:
            return queryset.filter(status=value)
        return queryset


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    """The operators' review list of inbound mail: what the parser did not understand."""

    list_display = ["received_at", "mail_from", "recipient_list", "size", "status", "kind", "error"]
    list_filter = [InboundStatusFilter, "kind"]
    search_fields = ["mail_from"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = [
        "received_at", "status", "kind", "error", "attempt_count", "processed_at", "peer", "helo",
        "mail_from", "recipients", "size", "workspace", "delivery", "parser_summary",
        "raw_message",
    ]  # fmt: skip
    readonly_fields = fields
    actions = ["process_again", "mark_ignored"]

    def get_queryset(self, request):
        # The list never loads the raw bytes (up to MAILIN_MAX_MESSAGE_BYTES per row).
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            queryset = queryset.defer("raw", "summary")
        return queryset

    @admin.display(description="Recipients")
    def recipient_list(self, obj: InboundMessage) -> str:
        return ", ".join(obj.recipients or [])

    @admin.display(description="What the parser read")
    def parser_summary(self, obj: InboundMessage) -> str:
        if not obj.summary:
            return "—"
        return format_html(
            '<pre class="inbound-summary">{}</pre>',
            json.dumps(obj.summary, indent=2, ensure_ascii=False, sort_keys=True),
        )

    @admin.display(description="Raw message (as text, never rendered)")
    def raw_message(self, obj: InboundMessage) -> str:
        raw = bytes(obj.raw or b"")
        text = raw[:RAW_SHOWN_BYTES].decode("utf-8", errors="replace")
        cut = len(raw) - RAW_SHOWN_BYTES
        note = f"\n… {cut} more bytes not shown" if cut > 0 else ""
        return format_html('<pre class="inbound-raw">{}{}</pre>', text, note)

    @admin.action(description="Process again")
    def process_again(self, request, queryset):
        # Written beside the inbound listener: parse again and act, as on arrival.
        from sending.services.inbound import inbound_reprocess

        done, failed = 0, []
        for pk in queryset.values_list("pk", flat=True):
            inbound = InboundMessage.objects.get(pk=pk)
            try:
                inbound_reprocess(inbound=inbound, acting_user=request.user)
            except ApplicationError as error:
                failed.append(f"#{inbound.pk}: {error.message}")
            else:
                done += 1
        self.message_user(request, f"Processed {done} message(s) again.", messages.SUCCESS)
        for problem in failed:
            self.message_user(request, problem, messages.ERROR)

    @admin.action(description="Mark ignored")
    def mark_ignored(self, request, queryset):
        from sending.services.inbound import inbound_ignore

        count = inbound_ignore(
            inbound_ids=list(queryset.values_list("pk", flat=True)), acting_user=request.user
        )
        self.message_user(request, f"Marked {count} message(s) ignored.", messages.SUCCESS)


@admin.register(FeedbackEvent)
class FeedbackEventAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at", "kind", "bounce_class", "address", "status", "diagnostic", "remote_mta",
        "source", "workspace",
    ]  # fmt: skip
    list_filter = ["kind", "bounce_class", "source"]
    search_fields = ["address", "diagnostic", "remote_mta", "sending_domain"]
    list_select_related = ["workspace"]
    raw_id_fields = ["delivery", "inbound_message"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


# --- quotas, approval and kill switches (sending/services/policy.py) ---------------------------


@admin.register(SendingPolicy)
class SendingPolicyAdmin(admin.ModelAdmin):
    """Operators set a workspace's quotas (0: none), its approval step and its kill switch;
    the switch goes through the service, so every flip is audited and workers notice it
    within SENDING_POLICY_CACHE_SECONDS."""

    list_display = [
        "workspace", "daily_quota", "hourly_quota", "requires_approval", "is_sending_stopped",
        "stopped_reason", "complaint_limit_percent", "updated_at",
    ]  # fmt: skip
    list_filter = ["requires_approval", "is_sending_stopped"]
    search_fields = ["workspace__name", "workspace__slug"]
    list_select_related = ["workspace"]
    autocomplete_fields = ["workspace"]
    fields = [
        "workspace", "daily_quota", "hourly_quota", "requires_approval",
        "complaint_limit_percent", "is_sending_stopped", "stopped_reason", "stopped_at",
        "reputation", "quota_usage",
    ]  # fmt: skip
    readonly_fields = ["stopped_at", "reputation", "quota_usage"]
    actions = ["stop_sending", "allow_sending", "approval_off"]

    @admin.display(description="Reputation (30 days)")
    def reputation(self, obj: SendingPolicy) -> str:
        if obj.pk is None:
            return "-"
        found = policy.workspace_reputation(workspace=obj.workspace)
        return (
            f"{found.label}: {found.sent} sent, bounces {found.bounce_percent:.2f}%, "
            f"complaints {found.complaint_percent:.3f}% (warning at "
            f"{policy.COMPLAINT_WARNING_PERCENT}%, bad at {policy.COMPLAINT_BAD_PERCENT}%)"
        )

    @admin.display(description="Sent in this hour / today")
    def quota_usage(self, obj: SendingPolicy) -> str:
        usage = policy.workspace_quota_usage(workspace_id=obj.workspace_id) if obj.pk else None
        if usage is None:
            return "-"
        return f"{usage.sent_this_hour} this hour, {usage.sent_today} today (UTC)"

    def save_model(self, request, obj: SendingPolicy, form, change: bool) -> None:
        switch_changed = "is_sending_stopped" in form.changed_data
        stopped, reason = obj.is_sending_stopped, obj.stopped_reason
        if switch_changed:
            obj.is_sending_stopped = not stopped  # the service flips it, with its audit entry
        super().save_model(request, obj, form, change)
        settings_changed = [name for name in form.changed_data if name not in _SWITCH_FIELDS]
        if settings_changed:
            audit_record(
                workspace=obj.workspace,
                actor=request.user,
                verb="workspace.sending_policy_changed",
                target=obj,
                details={name: str(form.cleaned_data[name]) for name in settings_changed},
            )
        if switch_changed and stopped:
            policy_services.workspace_sending_stop(
                workspace=obj.workspace,
                reason=reason or f"Stopped by {request.user.email}.",
                acting_user=request.user,
            )
        elif switch_changed:
            policy_services.workspace_sending_allow(
                workspace=obj.workspace, acting_user=request.user
            )
        obj.refresh_from_db()

    @admin.action(description="Stop sending of the selected workspaces")
    def stop_sending(self, request, queryset):
        for row in queryset.select_related("workspace"):
            policy_services.workspace_sending_stop(
                workspace=row.workspace,
                reason=f"Stopped by {request.user.email}.",
                acting_user=request.user,
            )
        self.message_user(request, "Sending stopped.", messages.WARNING)

    @admin.action(description="Allow sending of the selected workspaces")
    def allow_sending(self, request, queryset):
        for row in queryset.select_related("workspace"):
            policy_services.workspace_sending_allow(
                workspace=row.workspace, acting_user=request.user
            )
        self.message_user(request, "Sending allowed.", messages.SUCCESS)

    @admin.action(description="Let campaigns of the selected workspaces start without approval")
    def approval_off(self, request, queryset):
        for row in queryset.filter(requires_approval=True).select_related("workspace"):
            row.requires_approval = False
            row.save(update_fields=["requires_approval", "updated_at"])
            audit_record(
                workspace=row.workspace,
                actor=request.user,
                verb="workspace.approval_not_required",
                target=row,
            )
        self.message_user(request, "Their campaigns start without approval now.")


_SWITCH_FIELDS = {"is_sending_stopped", "stopped_reason"}


@admin.register(PlatformSwitch)
class PlatformSwitchAdmin(admin.ModelAdmin):
    """The platform's kill switch: tick it, give the reason, save. No campaign of any
    workspace claims anything until it is unticked."""

    list_display = ["__str__", "is_sending_stopped", "reason", "changed_at"]
    fields = ["is_sending_stopped", "reason", "changed_at"]
    readonly_fields = ["changed_at"]

    def has_add_permission(self, request) -> bool:
        return not PlatformSwitch.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj: PlatformSwitch, form, change: bool) -> None:
        if obj.is_sending_stopped:
            policy_services.platform_sending_stop(
                reason=obj.reason or f"Stopped by {request.user.email}.", acting_user=request.user
            )
        else:
            policy_services.platform_sending_allow(acting_user=request.user)
        saved = PlatformSwitch.objects.order_by("pk").first()
        obj.pk, obj.changed_at = saved.pk, saved.changed_at


class ApprovalFilter(admin.SimpleListFilter):
    title = "approval"
    parameter_name = "approval"

    def lookups(self, request, model_admin):
        return [("awaiting", "Awaiting approval"), ("approved", "Approved")]

    def queryset(self, request, queryset):
        if self.value() == "awaiting":
            return queryset.filter(pk__in=policy.campaign_list_awaiting_approval().values("pk"))
        if self.value() == "approved":
            return queryset.filter(approved_at__isnull=False)
        return queryset


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    """Operators read campaigns here and approve those of workspaces under review
    (filter "Awaiting approval"); approved campaigns start at the next due scan."""

    list_display = [
        "name", "workspace", "status", "scheduled_at", "from_email", "approved_at", "approved_by",
    ]  # fmt: skip
    list_filter = [ApprovalFilter, "status"]
    search_fields = ["name", "subject", "workspace__name", "from_email"]
    list_select_related = ["workspace", "approved_by"]
    fields = [
        "name", "workspace", "status", "subject", "from_name", "from_email", "scheduled_at",
        "approved_at", "approved_by",
    ]  # fmt: skip
    readonly_fields = fields
    actions = ["approve"]

    @admin.action(description="Approve the selected campaigns")
    def approve(self, request, queryset):
        approved = 0
        for campaign in queryset:
            try:
                policy_services.campaign_approve(campaign=campaign, acting_user=request.user)
            except ApplicationError as error:
                self.message_user(request, f"{campaign}: {error.message}", messages.ERROR)
            else:
                approved += 1
        self.message_user(request, f"Approved {approved} campaign(s).", messages.SUCCESS)


# --- warm-up schedules and destination providers (sending/warmup.py, sending/providers.py) ---


class WarmupScheduleForm(forms.ModelForm):
    class Meta:
        model = WarmupSchedule
        fields = ["name", "daily_caps", "is_default"]
        help_texts = {
            "daily_caps": "Day 1's cap first, such as [50, 100, 500, 1000]: positive whole "
            "numbers that never decrease. Past the last day there is no cap."
        }

    def clean_daily_caps(self):
        return warmup.schedule_caps_validate(self.cleaned_data.get("daily_caps"))


@admin.register(WarmupSchedule)
class WarmupScheduleAdmin(admin.ModelAdmin):
    form = WarmupScheduleForm
    list_display = ["name", "is_default", "days", "first_cap", "last_cap", "created_at"]
    search_fields = ["name"]

    @admin.display(description="Days")
    def days(self, schedule: WarmupSchedule) -> int:
        return len(schedule.daily_caps or [])

    @admin.display(description="Day 1")
    def first_cap(self, schedule: WarmupSchedule):
        return (schedule.daily_caps or [None])[0]

    @admin.display(description="Last day")
    def last_cap(self, schedule: WarmupSchedule):
        return (schedule.daily_caps or [None])[-1]


class ProviderLimitForm(forms.ModelForm):
    class Meta:
        model = ProviderLimit
        fields = ["provider", "messages_per_minute", "max_connections", "messages_per_connection"]

    def clean(self):
        cleaned = super().clean()
        for name in ("messages_per_minute", "max_connections", "messages_per_connection"):
            if cleaned.get(name) == 0:
                self.add_error(name, "Must be at least 1 (a provider is stopped in the queue).")
        return cleaned


@admin.register(ProviderLimit)
class ProviderLimitAdmin(admin.ModelAdmin):
    form = ProviderLimitForm
    list_display = ["provider", "messages_per_minute", "max_connections", "messages_per_connection"]
    list_editable = ["messages_per_minute", "max_connections", "messages_per_connection"]

    def get_changelist_form(self, request, **kwargs):
        return super().get_changelist_form(request, form=ProviderLimitForm, **kwargs)


@admin.register(RecipientDomain)
class RecipientDomainAdmin(ReadOnlyAdmin):
    """The MX look-ups' cache (sending/providers.py): a row older than
    PROVIDER_MX_MAX_AGE_SECONDS is looked up again by the next send to its domain."""

    list_display = ["domain", "provider", "mx_hosts", "checked_at"]
    list_filter = ["provider"]
    search_fields = ["domain"]
    show_full_result_count = False
