from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin
from projects.models import Membership
from projects.selectors import managed_project_ids

from . import analytics, keys, tasks, webhooks
from .forms import ApiKeyForm, SiteAnalyticsForm, WebhookForm
from .models import (
    ApiKey,
    Conversion,
    Notification,
    NotificationSetting,
    SiteAnalytics,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)


def _shown_once(request, title: str, label: str, value: str, note: str, back: str):
    """The one page that ever shows a new key or secret (not kept in a message cookie)."""
    response = TemplateResponse(
        request,
        "admin/integrations/shown_once.html",
        {
            "title": title,
            "label": label,
            "value": value,
            "note": note,
            "back": back,
            **admin.site.each_context(request),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@admin.register(ApiKey)
class ApiKeyAdmin(ScopedAdmin):
    form = ApiKeyForm
    list_display = ["name", "project", "prefix", "read_only", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["read_only", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        return ["project", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"] if obj else []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["project", "name", "read_only"]
        return ["project", "name", "prefix", "read_only", "created_at", "created_by", "last_used_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        row, key = keys.api_key_create(
            project=obj.project, name=obj.name, read_only=obj.read_only, created_by=request.user
        )
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = row.pk, row.prefix, row.key_hash, row.created_at
        obj._state.adding = False
        request._new_api_key = key

    def response_add(self, request, obj, post_url_continue=None):
        key = getattr(request, "_new_api_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        return _shown_once(
            request,
            gettext("API key created"),
            gettext("API key “%(name)s” for %(project)s") % {"name": obj.name, "project": obj.project},
            key,
            gettext(
                "Copy it now: it is stored only as a hash and cannot be shown again. "
                "Send it as the header Authorization: Bearer <key>."
            ),
            "../",
        )

    @admin.action(description=_("Revoke the selected keys"))
    def revoke(self, request, queryset):
        now = timezone.now()
        for key in queryset:
            if self.has_change_permission(request, key):
                keys.api_key_revoke(key, now)
        self.message_user(request, gettext("Revoked: requests with these keys are refused from now on."))


@admin.register(Webhook)
class WebhookAdmin(ScopedAdmin):
    form = WebhookForm
    list_display = ["url", "project", "event_list", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["url", "description"]

    @admin.display(description=_("Events"))
    def event_list(self, obj):
        return ", ".join(obj.events)

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("secret")
        if not change and not secret:
            secret = webhooks.new_secret()
            request._new_webhook_secret = secret
        if secret:
            webhooks.webhook_set_secret(obj, secret)
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        secret = getattr(request, "_new_webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return _shown_once(
            request,
            gettext("Webhook created"),
            gettext("Signing secret of %(url)s") % {"url": obj.url},
            secret,
            gettext(
                "Copy it into your receiver now: it is stored encrypted and never shown again. "
                "To change it, type a new one into the webhook's form."
            ),
            "../",
        )


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["number", "at", "status_code", "error", "duration_ms", "response_excerpt"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class _LogAdmin(ScopedAdmin):
    """Read-only logs of what was sent."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_LogAdmin):
    project_path = "webhook__project"
    list_display = ["created_at", "webhook", "event", "lead", "status", "attempts", "last_status_code", "sent_at"]
    list_filter = ["status", "event"]
    search_fields = ["webhook__url", "event_id"]
    list_select_related = ["webhook"]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not managed_project_ids(request.user):
            actions.pop("redeliver", None)
        return actions

    @admin.action(description=_("Redeliver the selected deliveries"))
    def redeliver(self, request, queryset):
        managed = managed_project_ids(request.user)
        now = timezone.now()
        sent, busy = [], 0
        for delivery in queryset.select_related("webhook"):
            if delivery.webhook.project_id not in managed:
                continue
            if webhooks.delivery_redeliver(delivery, now):
                sent.append(delivery.pk)
            else:
                busy += 1
        transaction.on_commit(lambda: [tasks.send_webhook_delivery.delay(pk) for pk in sent])
        self.message_user(request, gettext("%(count)s queued for redelivery.") % {"count": len(sent)})
        if busy:
            said = gettext("%(count)s being sent right now: try again in a minute.") % {"count": busy}
            self.message_user(request, said, messages.WARNING)


@admin.register(NotificationSetting)
class NotificationSettingAdmin(ScopedAdmin):
    """Managers set up any member of their projects; every member may set up their own."""

    project_path = "membership__project"
    list_display = ["membership", "email_enabled", "email", "telegram_enabled", "telegram_chat_id"]

    def _own(self, request, obj):
        return obj is not None and obj.membership.user_id == request.user.pk

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) or (request.user.is_staff and self._own(request, obj))

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def has_add_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "membership" and not request.user.is_superuser:
            kwargs["queryset"] = Membership.objects.filter(
                project_id__in=managed_project_ids(request.user)
            ) | Membership.objects.filter(user=request.user)
            # Past the project scoping, which would drop the member's own memberships of unmanaged projects.
            return admin.ModelAdmin.formfield_for_foreignkey(self, db_field, request, **kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Notification)
class NotificationAdmin(_LogAdmin):
    project_path = "membership__project"
    list_display = ["created_at", "lead", "membership", "channel", "status", "attempts", "last_error", "sent_at"]
    list_filter = ["status", "channel"]


@admin.register(SiteAnalytics)
class SiteAnalyticsAdmin(ScopedAdmin):
    form = SiteAnalyticsForm
    project_path = "site__project"
    list_display = ["site", "ga4_enabled", "ga4_measurement_id", "metrica_enabled", "metrica_counter_id"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if data.get("clear_secrets"):
            analytics.site_analytics_set_secrets(obj, ga4_api_secret="", metrica_token="")
        analytics.site_analytics_set_secrets(
            obj, ga4_api_secret=data.get("ga4_api_secret") or None, metrica_token=data.get("metrica_token") or None
        )
        super().save_model(request, obj, form, change)


@admin.register(Conversion)
class ConversionAdmin(_LogAdmin):
    project_path = "lead__project"
    list_display = ["created_at", "lead", "target", "status", "attempts", "last_error", "upload_id", "sent_at"]
    list_filter = ["status", "target"]
