import ipaddress
import json
import re

import redis
from csp.decorators import csp_update
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_GET

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from campaigns.models import Campaign
from sending import hosts, outbox, policy, providers, warmup
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

# --- IP pools, their IPs and workspace assignments ---------------------------------------

# A host name as SENDING_HOST_NAME gives it (socket.gethostname() by default).
_HOST_NAME_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_HOST_NAME_LABEL}(?:\.{_HOST_NAME_LABEL})*$")
# The addresses a "not an address of host" message lists, at most.
_ADDRESSES_SHOWN = 8


def _bound_host_problem(*, address: str, host: str) -> str | None:
    """Why `address` cannot be a sending IP bound on `host` (blank: any host), or None."""
    if not host:
        if ipaddress.ip_address(address).is_loopback:
            return None
        return (
            f"Name the host on which {address} is bound: blank (any host) is only for "
            "loopback addresses (127.0.0.0/8, ::1), which every host has."
        )
    try:
        has_address = hosts.host_has_address(host, address)
        if has_address is None:
            return (
                f"No worker on host {host} has reported its addresses yet: start a worker "
                f"there (with SENDING_HOST_NAME={host}), then save again."
            )
        if has_address:
            return None
        known = (
            hosts.local_addresses()
            if host == hosts.host_name()
            else hosts.host_addresses_published(host)
        )
    except redis.RedisError:
        return f"The addresses of host {host} could not be read from Redis; try again."
    shown = ", ".join(sorted(known)[:_ADDRESSES_SHOWN]) + (
        ", …" if len(known) > _ADDRESSES_SHOWN else ""
    )
    return (
        f"{address} is not an address of host {host} (its addresses: {shown}). Bind it "
        "there first, or name the host where it is bound."
    )


class SendingIpForm(forms.ModelForm):
    """Refuses an address that its host does not have (as its workers report it)."""

    class Meta:
        model = SendingIp
        fields = [
            "address", "pool", "helo_hostname", "bound_host", "is_active", "state",
            "warmup_started_on",
        ]  # fmt: skip
        help_texts = {
            "bound_host": "The host (its SENDING_HOST_NAME) on which the address is bound: "
            "that host's send workers send from it. Blank means any host, for loopback "
            "addresses only (127.0.0.0/8 and ::1 exist on every host)."
        }

    def clean_bound_host(self) -> str:
        host = (self.cleaned_data.get("bound_host") or "").strip()
        if host and not _HOST_NAME.match(host):
            raise forms.ValidationError(
                f"“{host}” is not a host name: letters, digits, hyphens and dots, as "
                "SENDING_HOST_NAME gives it on that host."
            )
        return host

    def clean(self):
        cleaned = super().clean()
        address, host = cleaned.get("address"), cleaned.get("bound_host")
        unchanged = self.instance.pk and not {"address", "bound_host"} & set(self.changed_data)
        if address is None or host is None or unchanged:
            return cleaned  # an invalid field has its message already; an old row is kept
        problem = _bound_host_problem(address=address, host=host)
        if problem:
            self.add_error("bound_host", problem)
        return cleaned


class SendingIpInline(admin.TabularInline):
    model = SendingIp
    form = SendingIpForm
    extra = 0
    fields = ["address", "helo_hostname", "bound_host", "is_active", "ptr_state", "ptr_checked_at"]
    readonly_fields = ["ptr_state", "ptr_checked_at"]


class IpPoolForm(forms.ModelForm):
    """A workspace has at most one dedicated pool, and only it sends through that pool."""

    class Meta:
        model = IpPool
        fields = [
            "name", "kind", "dedicated_workspace", "is_default", "warmup_schedule", "transport",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        kind, workspace = cleaned.get("kind"), cleaned.get("dedicated_workspace")
        if kind == IpPool.Kind.DEDICATED and workspace is None:
            self.add_error(
                "dedicated_workspace", "A dedicated pool names the workspace it sends for."
            )
        elif kind == IpPool.Kind.SHARED and workspace is not None:
            self.add_error(
                "dedicated_workspace",
                "Only a dedicated pool names a workspace: choose “Dedicated” or leave this blank.",
            )
        if cleaned.get("is_default"):
            self._clean_default(kind)
        if kind == IpPool.Kind.DEDICATED and workspace is not None:
            self._clean_dedicated(workspace)
        return cleaned

    def _clean_default(self, kind: str | None) -> None:
        if kind == IpPool.Kind.DEDICATED:
            self.add_error(
                "is_default",
                "The default pool sends for every workspace without a pool: it must be shared.",
            )
            return
        other = IpPool.objects.filter(is_default=True).exclude(pk=self.instance.pk).first()
        if other is not None:
            self.add_error(
                "is_default", f"“{other}” is the default pool already: untick it there first."
            )

    def _clean_dedicated(self, workspace) -> None:
        pool_id = self.instance.pk
        other = (
            IpPool.objects.filter(kind=IpPool.Kind.DEDICATED, dedicated_workspace=workspace)
            .exclude(pk=pool_id)
            .first()
        )
        if other is not None:
            self.add_error(
                "dedicated_workspace",
                f"{workspace} already has a dedicated pool, “{other}”: a workspace sends "
                "through one pool, so add the IPs to that pool instead.",
            )
        assignment = (
            WorkspacePool.objects.filter(workspace=workspace, pool__kind=IpPool.Kind.DEDICATED)
            .exclude(pool_id=pool_id)
            .exclude(pool__dedicated_workspace=workspace)
            .select_related("pool__dedicated_workspace")
            .first()
        )
        if assignment is not None:
            self.add_error(
                "dedicated_workspace",
                f"{workspace} is assigned to “{assignment.pool}”, the dedicated pool of "
                f"{assignment.pool.dedicated_workspace}: assign it its own pool first.",
            )
        if pool_id is not None:
            strangers = sorted(
                str(row.workspace)
                for row in WorkspacePool.objects.filter(pool_id=pool_id)
                .exclude(workspace=workspace)
                .select_related("workspace")
            )
            if strangers:
                self.add_error(
                    "dedicated_workspace",
                    f"Other workspaces send through this pool ({', '.join(strangers)}): a "
                    f"dedicated pool sends for {workspace} only. Assign them another pool "
                    "first.",
                )


@admin.register(IpPool)
class IpPoolAdmin(admin.ModelAdmin):
    form = IpPoolForm
    list_display = ["name", "kind", "transport", "dedicated_workspace", "is_default", "created_at"]
    list_filter = ["kind", "transport", "is_default"]
    search_fields = ["name", "dedicated_workspace__name"]
    autocomplete_fields = ["dedicated_workspace"]
    inlines = [SendingIpInline]


class WorkspacePoolForm(forms.ModelForm):
    """A dedicated pool is assigned to its own workspace only."""

    class Meta:
        model = WorkspacePool
        fields = ["workspace", "pool", "assigned_at"]

    def clean(self):
        cleaned = super().clean()
        workspace, pool = cleaned.get("workspace"), cleaned.get("pool")
        if (
            workspace is not None
            and pool is not None
            and pool.kind == IpPool.Kind.DEDICATED
            and pool.dedicated_workspace_id != workspace.pk
        ):
            self.add_error(
                "pool",
                f"“{pool}” is dedicated to {pool.dedicated_workspace}: only that workspace "
                "sends through it.",
            )
        return cleaned


@admin.register(WorkspacePool)
class WorkspacePoolAdmin(admin.ModelAdmin):
    form = WorkspacePoolForm
    list_display = ["workspace", "pool", "assigned_at"]
    autocomplete_fields = ["workspace"]
    list_select_related = ["workspace", "pool"]


@admin.register(SendingIp)
class SendingIpAdmin(admin.ModelAdmin):
    """Operators' view of sending IPs, with forward-confirmed reverse DNS."""

    form = SendingIpForm
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
    list_display = [
        "domain", "workspace", "status", "is_warmed_up", "last_checked_at", "first_verified_at",
    ]  # fmt: skip
    list_filter = ["status", "is_warmed_up"]
    search_fields = ["domain", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace"]
    readonly_fields = [
        "workspace", "domain", "status", "record_states", "last_checked_at",
        "first_verified_at", "broken_at", "created_by", "created_at",
    ]  # fmt: skip
    # An operator marks an established domain (one with a sending history elsewhere) warmed
    # up: it then has no new-domain caps.
    fields = [
        *readonly_fields, "return_path_subdomain", "tracking_subdomain", "is_warmed_up",
        "warmup_started_on",
    ]  # fmt: skip
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
            path(
                "sending/mail-queue/hold/",
                admin.site.admin_view(operator.mail_queue_hold),
                name="sending_mail_queue_hold",
            ),
            path(
                "sending/mail-queue/release/",
                admin.site.admin_view(operator.mail_queue_release),
                name="sending_mail_queue_release",
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


# An MX host's name once lower-cased and IDNA-encoded: LDH labels, a TLD that is no number.
_MX_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_MX_HOST = re.compile(rf"^(?=.{{1,253}}$)(?:{_MX_LABEL}\.)+(?!\d+$){_MX_LABEL}$")


def _mx_host_clean(entry: str) -> str:
    """One MX host as stored ('ASPMX.L.Google.com.' -> 'aspmx.l.google.com');
    ValidationError saying what is wrong with it otherwise."""
    if any(char.isspace() for char in entry):
        raise forms.ValidationError(f"“{entry}” contains a space: give one host name per line.")
    if "*" in entry:
        raise forms.ValidationError(
            f"“{entry}” has a wildcard: MX hosts are exact host names (a provider is "
            "recognised from the host name's ending, such as google.com)."
        )
    try:
        ipaddress.ip_address(entry.strip("[]"))
    except ValueError:
        pass
    else:
        raise forms.ValidationError(
            f"“{entry}” is an IP address: an MX record names a host, never an address."
        )
    key = providers.domain_key(entry)
    if key is None or not _MX_HOST.match(key):
        raise forms.ValidationError(f"“{entry}” is not a host name (such as aspmx.l.google.com).")
    return key


class RecipientDomainForm(forms.ModelForm):
    """Operators set a domain's provider (and its MX hosts, for the record) by hand."""

    mx_hosts = forms.CharField(
        label="MX hosts",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One host name per line, most preferred first, such as aspmx.l.google.com.",
    )

    class Meta:
        model = RecipientDomain
        fields = ["domain", "provider", "mx_hosts"]
        help_texts = {
            "provider": "The provider whose limits and warm-up caps this domain's mail "
            "counts against. With DNS_RESOLVERS set, the domain is looked up again after "
            "PROVIDER_MX_MAX_AGE_SECONDS, which replaces what is set here.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["mx_hosts"] = "\n".join(self.instance.mx_hosts or [])

    def clean_domain(self) -> str:
        given = (self.cleaned_data.get("domain") or "").strip()
        key = providers.domain_key(given)
        if key is None or not _MX_HOST.match(key):
            raise forms.ValidationError(f"“{given}” is not a domain name (such as acme-corp.de).")
        if providers.is_reserved(key):
            raise forms.ValidationError(
                f"{key} is reserved for documentation and tests: its mail is never counted "
                "against a provider, so a row here would not be read."
            )
        built_in = providers.table_provider(key)
        if built_in is not None:
            raise forms.ValidationError(
                f"{key} is in the built-in table of consumer domains ({built_in}): a row "
                "here would not be read."
            )
        return key

    def clean_mx_hosts(self) -> list[str]:
        entries = re.split(r"[\n,]", self.cleaned_data.get("mx_hosts") or "")
        hosts_found: list[str] = []
        for entry in (entry.strip() for entry in entries):
            if entry:
                host = _mx_host_clean(entry)
                if host not in hosts_found:
                    hosts_found.append(host)
        return hosts_found


@admin.register(RecipientDomain)
class RecipientDomainAdmin(admin.ModelAdmin):
    """The MX look-ups' cache (sending/providers.py): a row older than
    PROVIDER_MX_MAX_AGE_SECONDS is looked up again by the next send to its domain.
    Operators may add or correct a domain's provider here."""

    form = RecipientDomainForm
    list_display = ["domain", "provider", "mx_hosts", "checked_at"]
    list_filter = ["provider"]
    search_fields = ["domain"]
    show_full_result_count = False
    readonly_fields = ["checked_at"]

    def get_readonly_fields(self, request, obj=None):
        # The domain is the row's key: a different domain is a new row.
        return ["domain", "checked_at"] if obj is not None else ["checked_at"]

    def save_model(self, request, obj: RecipientDomain, form, change: bool) -> None:
        obj.checked_at = timezone.now()  # as set now: not due for a look-up before its age
        super().save_model(request, obj, form, change)
