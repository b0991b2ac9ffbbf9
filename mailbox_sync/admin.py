from django import forms
from django.contrib import admin, messages

from projects.admin_scoping import ScopedAdmin

from . import services, tasks
from .models import FolderState, Letter, Mailbox


class MailboxForm(forms.ModelForm):
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Stored encrypted and never shown again. Leave empty to keep the current one.",
    )

    class Meta:
        model = Mailbox
        fields = [
            "project",
            "name",
            "host",
            "port",
            "security",
            "username",
            "password",
            "folders",
            "active",
            "repeat_period",
            "sync_interval_minutes",
            "text_limit",
            "tracked_only",
        ]

    def clean_username(self):
        return self.cleaned_data["username"].strip().lower()

    def clean(self):
        data = super().clean()
        if not self.instance.pk and not data.get("password"):
            self.add_error("password", "A new mailbox needs its password.")
        host, username = (data.get("host") or "").strip().lower(), data.get("username")
        if host and username:
            data["host"] = host
            taken = Mailbox.objects.filter(host=host, username=username).exclude(pk=self.instance.pk)
            if taken.exists():
                raise forms.ValidationError("This mailbox is already connected (possibly in another project).")
        return data

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            services.mailbox_set_password(self.instance, self.cleaned_data["password"])
        return super().save(commit)


class FolderStateInline(admin.TabularInline):
    model = FolderState
    extra = 0
    can_delete = False
    readonly_fields = ["name", "uidvalidity", "last_uid", "last_synced_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


@admin.register(Mailbox)
class MailboxAdmin(ScopedAdmin):
    form = MailboxForm
    list_display = ["name", "project", "username", "active", "state", "last_sync_at", "letter_count", "last_error"]
    list_filter = ["active", "state"]
    search_fields = ["name", "username", "host"]
    readonly_fields = [
        "state",
        "last_sync_at",
        "last_success_at",
        "next_sync_at",
        "last_error",
        "last_error_at",
        "failure_count",
    ]
    inlines = [FolderStateInline]
    actions = ["sync_now"]

    @admin.display(description="Letters")
    def letter_count(self, obj):
        return obj.letters.count()

    @admin.action(description="Sync now")
    def sync_now(self, request, queryset):
        for mailbox in queryset:
            tasks.sync_mailbox.delay(mailbox.pk)
        self.message_user(request, f"{queryset.count()} syncs enqueued.", messages.SUCCESS)


@admin.register(Letter)
class LetterAdmin(ScopedAdmin):
    project_path = "mailbox__project"
    list_display = ["received_at", "sender_email", "subject", "mailbox", "lead", "malformed", "not_lead_reason"]
    list_filter = ["malformed", "origin"]
    search_fields = ["sender_email", "subject", "message_id"]
    date_hierarchy = "received_at"
    exclude = ["raw"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "raw"]

    def has_add_permission(self, request, obj=None):
        return False
