from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin
from projects.selectors import managed_project_ids

from . import conf, credentials, queue, tasks
from .forms import CredentialForm, UpstreamForm
from .models import Credential, QueuedLetter, Upstream


@admin.register(Upstream)
class UpstreamAdmin(ScopedAdmin):
    form = UpstreamForm
    list_display = ["project", "host", "port", "security", "username", "active"]
    list_filter = ["security", "active"]


@admin.register(Credential)
class CredentialAdmin(ScopedAdmin):
    form = CredentialForm
    list_display = ["name", "project", "username", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "username"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["project", "username", "created_at", "created_by", "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["project", "name", "allowed_senders", "recipients_per_hour"]
        return [
            "project",
            "name",
            "username",
            "allowed_senders",
            "recipients_per_hour",
            "created_at",
            "created_by",
            "last_used_at",
            "revoked_at",
        ]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        row, password = credentials.credential_create(
            project=obj.project,
            name=obj.name,
            allowed_senders=obj.allowed_senders,
            recipients_per_hour=obj.recipients_per_hour,
            created_by=request.user,
        )
        obj.pk, obj.username, obj.password_hash, obj.created_at = (
            row.pk,
            row.username,
            row.password_hash,
            row.created_at,
        )
        obj._state.adding = False
        request._new_relay_password = password

    def response_add(self, request, obj, post_url_continue=None):
        password = getattr(request, "_new_relay_password", None)
        if password is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/relay/shown_once.html",
            {
                "title": _("Relay credential created"),
                "label": _("Settings for the outgoing (SMTP) server of “%(name)s”:") % {"name": obj.name},
                "rows": [
                    (_("Server"), conf.hostname()),
                    (_("Port"), conf.public_port()),
                    (
                        _("Security"),
                        _("STARTTLS") if conf.tls_files()[0] else _("none (connections from this machine only)"),
                    ),
                    (_("Username"), obj.username),
                    (_("Password"), password),
                ],
                "note": _("Copy the password now: it is stored only as a hash and cannot be shown again."),
                "back": "../",
                **admin.site.each_context(request),
            },
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=_("Revoke the selected credentials"))
    def revoke(self, request, queryset):
        now = timezone.now()
        for credential in queryset:
            if self.has_change_permission(request, credential):
                credentials.credential_revoke(credential, now)
        self.message_user(request, _("Revoked: logins with these credentials are refused from now on."))


@admin.register(QueuedLetter)
class QueuedLetterAdmin(ScopedAdmin):
    list_display = [
        "created_at",
        "kind",
        "project",
        "mail_from",
        "recipient_list",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["mail_from", "message_id"]
    actions = ["retry"]
    exclude = ["raw", "recipient_ids"]

    @admin.display(description=_("recipients"))
    def recipient_list(self, obj):
        return ", ".join([*obj.recipients, *obj.delivered, *[f[0] for f in obj.refused]])[:200]

    def has_add_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not managed_project_ids(request.user):
            actions.pop("retry", None)
        return actions

    @admin.action(description=_("Retry the selected letters now"))
    def retry(self, request, queryset):
        ids = queue.retry_now(queryset.filter(project_id__in=managed_project_ids(request.user)))
        transaction.on_commit(lambda: [tasks.send_queued.delay(pk) for pk in ids])
        self.message_user(request, _("%(count)d letters will be tried again now.") % {"count": len(ids)})
        if not ids:
            self.message_user(request, _("Only waiting letters can be retried."), messages.WARNING)
