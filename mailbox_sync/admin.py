from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.text import format_lazy
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from projects.admin_scoping import ScopedAdmin, ScopedTabularInline
from projects.selectors import managed_project_ids

from . import grants, oauth, providers, selectors, services, tasks
from .models import FolderState, Letter, LetterCopy, Mailbox, OAuthGrant, Reply

PRESET_NOTES = " ".join(f"{provider.label}: {preset.note}" for provider, preset in providers.PRESETS.items())
# The form's second button: test what was entered, save nothing.
TEST_CONNECTION = "_test_connection"
TESTED_NOT_SAVED = _("Connection tested; nothing was saved.")
# The form's third button: sign in with the provider again.
CONNECT_OAUTH = "_connect_oauth"
# Consent flows under way, in the account manager's session: state → mailbox and PKCE verifier.
CONSENTS = "mailbox_oauth_consents"
CONSENTS_KEPT = 5


class MailboxForm(forms.ModelForm):
    provider = forms.ChoiceField(
        choices=providers.Provider.choices,
        required=False,
        initial=providers.Provider.OTHER,
        help_text=format_lazy("{} {}", _("A named provider sets the server, port and TLS itself."), PRESET_NOTES),
    )
    folder_mode = forms.ChoiceField(
        choices=Mailbox.FolderMode.choices,
        required=False,
        initial=Mailbox.FolderMode.LISTED,
        label=_("Folders to watch"),
        help_text=Mailbox._meta.get_field("folder_mode").help_text,
    )
    auth = forms.ChoiceField(
        choices=Mailbox.Auth.choices,
        required=False,
        initial=Mailbox.Auth.PASSWORD,
        label=_("Sign-in"),
        help_text=_(
            "OAuth2: after saving, you sign in with the provider (Google, Microsoft, Yandex, or the one the "
            "installation configured); the password is not needed."
        ),
    )
    host = forms.CharField(
        required=False, max_length=253, help_text=_("Only for “Other”: the IMAP server's name."), label=_("host")
    )
    port = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text=_("Only for “Other”."), label=_("port")
    )
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text=_(
            "The password or app password. Stored encrypted and never shown again. Leave empty to keep the current one."
        ),
        label=_("password"),
    )

    class Meta:
        model = Mailbox
        fields = [
            "project",
            "name",
            "provider",
            "host",
            "port",
            "security",
            "auth",
            "username",
            "password",
            "folder_mode",
            "folders",
            "watch_sent",
            "active",
            "repeat_period",
            "sync_interval_minutes",
            "text_limit",
            "tracked_only",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "username" in self.fields:  # not on a read-only view (a marketer's)
            self.fields["username"].required = False
            self.fields["username"].help_text = _(
                "With OAuth2 it may stay empty: the provider says which mailbox it is."
            )

    def clean_username(self):
        return services.normalise_username(self.cleaned_data["username"])

    def clean(self):
        data = super().clean()
        data["provider"] = data.get("provider") or providers.Provider.OTHER
        data["folder_mode"] = data.get("folder_mode") or Mailbox.FolderMode.LISTED
        data["auth"] = data.get("auth") or Mailbox.Auth.PASSWORD
        preset = providers.preset(data["provider"])
        oauth2 = data["auth"] == Mailbox.Auth.OAUTH2
        if preset is not None and not preset.password_allowed and not oauth2:
            self.add_error("auth", preset.note)
            return data
        if oauth2 and oauth.client_for(data["provider"]) is None:
            self.add_error(
                "auth",
                _(
                    "No OAuth2 client is configured for this provider: "
                    "see README, “Mailboxes: leads in seconds (IMAP IDLE) and OAuth2”."
                ),
            )
            return data
        if not oauth2 and not data.get("username"):
            self.add_error("username", _("Enter the mailbox's username (usually its address)."))
        if preset is not None:
            data["host"], data["port"], data["security"] = preset.host, preset.port, preset.security
        else:
            if not data.get("host"):
                self.add_error("host", _("Enter the IMAP server, or choose a provider."))
            if not data.get("port"):
                self.add_error("port", _("Enter the port (usually 993 for TLS, 143 for STARTTLS)."))
        data["host"] = services.normalise_host(data.get("host") or "")
        if preset is None and data["host"] and data.get("port"):
            refused = services.host_refusal(data["host"], data["port"])
            if refused:
                self.add_error("host", refused)
        if not self.instance.pk and not data.get("password") and not oauth2:
            self.add_error("password", _("A new mailbox needs its password."))
        if TEST_CONNECTION in self.data and not self.errors:
            # Before saving (a new mailbox too): the entered server, login and
            # folders; an empty password means the stored one. The error only
            # keeps the admin from saving; the page shows the verdict.
            self.connection_verdict = services.check_connection(
                self._entered_mailbox(data), data.get("password") or None
            )
            self.password_typed = bool(data.get("password"))
            self.add_error(None, TESTED_NOT_SAVED)
        return data

    def _entered_mailbox(self, data) -> Mailbox:
        return Mailbox(
            provider=data["provider"],
            host=data["host"],
            port=data.get("port") or 0,
            security=data.get("security") or Mailbox.Security.SSL,
            username=data.get("username") or "",
            folder_mode=data["folder_mode"],
            folders=data.get("folders") or "INBOX",
            watch_sent=bool(data.get("watch_sent")),
            password_encrypted=self.instance.password_encrypted,
            auth=data["auth"],
            pk=self.instance.pk,
        )

    def save(self, commit=True):
        if self.cleaned_data.get("password"):
            services.mailbox_set_password(self.instance, self.cleaned_data["password"])
        return super().save(commit)


class FolderStateInline(admin.TabularInline):
    model = FolderState
    extra = 0
    can_delete = False
    readonly_fields = ["name", "uidvalidity", "last_uid", "last_synced_at", "window_since"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


@admin.register(Mailbox)
class MailboxAdmin(ScopedAdmin):
    form = MailboxForm
    list_display = [
        "name",
        "project",
        "username",
        "active",
        "state",
        "hearing",
        "last_sync_at",
        "letters",
        "unreadable",
        "error",
    ]
    list_filter = ["active", "state", "provider"]
    search_fields = ["name", "username", "host"]
    readonly_fields = [
        "state",
        "last_sync_at",
        "last_success_at",
        "next_sync_at",
        "last_error",
        "last_error_at",
        "failure_count",
        "sync_horizon",
        "hearing",
        "last_letter_heard",
    ]
    inlines = [FolderStateInline]
    actions = ["test_connection", "sync_now"]

    def get_queryset(self, request):
        return selectors.mailboxes_with_counts(super().get_queryset(request)).select_related("listening")

    @admin.display(description=_("New letters heard by"))
    def hearing(self, obj):
        heard = selectors.hearing(obj)
        parts = [heard.label]
        if heard.since is not None:
            parts.append(_("since %(when)s") % {"when": heard.since.strftime("%Y-%m-%d %H:%M UTC")})
        text = " ".join(str(part) for part in parts)
        return f"{text}: {heard.why}" if heard.why else text

    @admin.display(description=_("Last letter heard"))
    def last_letter_heard(self, obj):
        heard = selectors.hearing(obj)
        return heard.last_letter_at.strftime("%Y-%m-%d %H:%M:%S UTC") if heard.last_letter_at else "—"

    @admin.display(description=_("Letters"), ordering="letter_count")
    def letters(self, obj):
        return obj.letter_count

    @admin.display(description=_("Unreadable"), ordering="unreadable_count")
    def unreadable(self, obj):
        return obj.unreadable_count

    @admin.display(description=_("Error"))
    def error(self, obj):
        if not obj.last_error:
            return ""
        when = obj.last_error_at.strftime("%Y-%m-%d %H:%M UTC") if obj.last_error_at else ""
        return f"{obj.last_error} ({when})" if when else obj.last_error

    @admin.action(description=_("Sync now"), permissions=["change"])
    def sync_now(self, request, queryset):
        ids = list(self._managed(request, queryset).values_list("pk", flat=True))
        for mailbox_id in ids:
            tasks.sync_mailbox.delay(mailbox_id)
        said = ngettext("%(count)d sync enqueued.", "%(count)d syncs enqueued.", len(ids)) % {"count": len(ids)}
        self.message_user(request, said, messages.SUCCESS)

    @admin.action(description=_("Test connection"), permissions=["change"])
    def test_connection(self, request, queryset):
        for mailbox in self._managed(request, queryset):
            self._report(request, mailbox, services.check_connection(mailbox))

    @staticmethod
    def _managed(request, queryset):
        """Only the mailboxes of projects the user manages: marketers read, they run nothing."""
        if request.user.is_superuser:
            return queryset
        return queryset.filter(project_id__in=managed_project_ids(request.user))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        verdict = getattr(form, "connection_verdict", None)
        if verdict is not None:
            said = gettext("Connection test: %(verdict)s") % {"verdict": verdict.message}
            if form.password_typed:
                # PasswordInput never renders what was typed.
                said = said.rstrip(".") + ". " + gettext("To save, enter the password again.")
            self.message_user(request, said, messages.SUCCESS if verdict.ok else messages.ERROR)
            if form.errors.keys() == {NON_FIELD_ERRORS} and [str(error) for error in form.non_field_errors()] == [
                str(TESTED_NOT_SAVED)
            ]:
                context["errors"] = []  # a test, not a mistake to correct
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _report(self, request, mailbox, verdict):
        level = messages.SUCCESS if verdict.ok else messages.ERROR
        self.message_user(request, f"{mailbox.name}: {verdict.message}", level)

    def get_urls(self):
        return [
            path(
                "oauth/callback/",
                self.admin_site.admin_view(self.oauth_callback_view),
                name="mailbox_sync_mailbox_oauth_callback",
            ),
            path(
                "<path:object_id>/oauth/start/",
                self.admin_site.admin_view(self.oauth_start_view),
                name="mailbox_sync_mailbox_oauth_start",
            ),
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(require_POST(self.test_connection_view)),
                name="mailbox_sync_mailbox_test_connection",
            ),
            *super().get_urls(),
        ]

    def test_connection_view(self, request, object_id):
        mailbox = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, mailbox):
            raise PermissionDenied
        self._report(request, mailbox, services.check_connection(mailbox))
        return redirect("admin:mailbox_sync_mailbox_change", mailbox.pk)

    # --- OAuth2: the consent flow ------------------------------------------------

    def _needs_consent(self, request, obj) -> bool:
        if obj.auth != Mailbox.Auth.OAUTH2:
            return False
        grant = OAuthGrant.objects.filter(pk=obj.pk).first()
        return CONNECT_OAUTH in request.POST or grant is None or bool(grant.refused)

    def response_add(self, request, obj, post_url_continue=None):
        if self._needs_consent(request, obj):
            return redirect("admin:mailbox_sync_mailbox_oauth_start", obj.pk)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if self._needs_consent(request, obj):
            return redirect("admin:mailbox_sync_mailbox_oauth_start", obj.pk)
        return super().response_change(request, obj)

    def oauth_start_view(self, request, object_id):
        """Off to the provider's consent page: code flow with PKCE and `state`."""
        mailbox = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, mailbox):
            raise PermissionDenied
        client = oauth.client_for(mailbox.provider)
        if client is None:
            self.message_user(request, _("No OAuth2 client is configured for this provider."), messages.ERROR)
            return redirect("admin:mailbox_sync_mailbox_change", mailbox.pk)
        started = oauth.consent(client, _callback_uri(), login_hint=mailbox.username)
        consents = request.session.get(CONSENTS, {})
        consents[started.state] = {"mailbox": mailbox.pk, "verifier": started.verifier}
        request.session[CONSENTS] = dict(list(consents.items())[-CONSENTS_KEPT:])
        return redirect(started.url)

    def oauth_callback_view(self, request):
        """Back from the provider: the `state` must be one this session sent."""
        consent = request.session.get(CONSENTS, {}).pop(request.GET.get("state", ""), None)
        request.session.modified = True
        if consent is None:
            return HttpResponseBadRequest(_("This sign-in was not started here, or is over: start it again."))
        mailbox = get_object_or_404(self.get_queryset(request), pk=consent["mailbox"])
        if not self.has_change_permission(request, mailbox):
            raise PermissionDenied
        client = oauth.client_for(mailbox.provider)
        if request.GET.get("error") or client is None:
            said = request.GET.get("error_description") or request.GET.get("error") or ""
            self.message_user(request, _("The provider did not connect the mailbox: %s") % said[:300], messages.ERROR)
            return redirect("admin:mailbox_sync_mailbox_change", mailbox.pk)
        try:
            address = grants.finish_consent(
                mailbox, client, request.GET.get("code", ""), consent["verifier"], _callback_uri()
            )
        except oauth.OAuthError as error:
            self.message_user(request, _("Not connected: %s") % error, messages.ERROR)
            return redirect("admin:mailbox_sync_mailbox_change", mailbox.pk)
        self.message_user(
            request,
            _("Connected with %(provider)s as %(address)s.") % {"provider": client.name, "address": address},
            messages.SUCCESS,
        )
        return redirect("admin:mailbox_sync_mailbox_change", mailbox.pk)


def _callback_uri() -> str:
    """The redirect URI registered with each provider."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("admin:mailbox_sync_mailbox_oauth_callback")


class LetterCopyInline(ScopedTabularInline):
    """Where else the letter was seen (the same letter: same Message-ID and content)."""

    model = LetterCopy
    fk_name = "letter"
    parent_project_path = "mailbox__project"
    fields = ["origin", "folder", "uidvalidity", "uid", "received_at", "seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "copy seen elsewhere"
    verbose_name_plural = "also seen (copies of this letter)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Letter)
class LetterAdmin(ScopedAdmin):
    project_path = "mailbox__project"
    list_display = [
        "received_at",
        "sender_email",
        "subject",
        "mailbox",
        "lead",
        "malformed",
        "message_id_reused",
        "not_lead_reason",
    ]
    list_filter = ["malformed", "truncated", "message_id_reused", "origin"]
    inlines = [LetterCopyInline]
    search_fields = ["sender_email", "subject", "message_id"]
    date_hierarchy = "received_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Reply)
class ReplyAdmin(ScopedAdmin):
    project_path = "mailbox__project"
    list_display = ["sent_at", "mailbox", "recipient_list", "lead"]
    search_fields = ["message_id", "in_reply_to"]
    date_hierarchy = "sent_at"

    @admin.display(description="To")
    def recipient_list(self, obj):
        return ", ".join(obj.recipients[:5])

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False
