from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin, ScopedTabularInline

from . import networks, selectors
from .models import EngagementSettings, Event, Message, MessageRecipient, NetworkKind, NetworkList, OptOut


class _ReadOnlyInline(ScopedTabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RecipientInline(_ReadOnlyInline):
    model = MessageRecipient
    fields = ["email", "open_state", "delivered_at", "first_opened_at", "last_opened_at", "replied_at"]
    readonly_fields = fields


class EventInline(_ReadOnlyInline):
    model = Event
    fields = [
        "at",
        "recipient",
        "kind",
        "verdict",
        "probable",
        "inferred",
        "reason",
        "link",
        "device_type",
        "ip_truncated",
        "user_agent",
        "method",
    ]
    readonly_fields = fields
    ordering = ["at", "id"]


@admin.register(Message)
class MessageAdmin(ScopedAdmin):
    """Read-only: messages are made by the API and the relay; their events by the endpoints."""

    list_display = ["created_at", "subject", "campaign", "origin", "recipient_count", "people_opened", "clicks"]
    list_filter = ["origin"]
    search_fields = ["subject", "campaign", "message_id", "recipients__email"]
    date_hierarchy = "created_at"
    inlines = [RecipientInline, EventInline]
    readonly_fields = [
        "project",
        "origin",
        "subject",
        "campaign",
        "lead",
        "message_id",
        "mail_from",
        "sender_network",
        "has_html",
        "has_text",
        "size",
        "created_at",
        "figures",
    ]
    fields = readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("project")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def _figures(self, obj):
        cache = getattr(self, "_figure_cache", None)
        if cache is None or obj.pk not in cache:
            self._figure_cache = selectors.totals([obj.pk])
        return self._figure_cache[obj.pk]

    @admin.display(description=_("recipients"))
    def recipient_count(self, obj):
        return self._figures(obj)["recipients"]

    @admin.display(description=_("opened by people"))
    def people_opened(self, obj):
        return self._figures(obj)["opens"]["human"]

    @admin.display(description=_("clicks (people / machines)"))
    def clicks(self, obj):
        figures = self._figures(obj)["clicks"]
        return f"{figures['human']} / {figures['machine']}"

    @admin.display(description=_("figures"))
    def figures(self, obj):
        figures = self._figures(obj)
        opens = figures["opens"]
        return _(
            "Delivered %(delivered)s; opened by people %(human)s, inferred %(inferred)s, machine opens "
            "%(machine)s %(kinds)s; clicks by people %(clicks_human)s, by machines %(clicks_machine)s; "
            "replies %(replies)s."
        ) % {
            "delivered": figures["delivered"],
            "human": opens["human"],
            "inferred": opens["inferred"],
            "machine": opens["machine"],
            "kinds": opens["machine_by_kind"] or "",
            "clicks_human": figures["clicks"]["human"],
            "clicks_machine": figures["clicks"]["machine"],
            "replies": figures["replies"],
        }


@admin.register(EngagementSettings)
class EngagementSettingsAdmin(ScopedAdmin):
    list_display = ["project", "tracking_enabled", "retention_days", "webhook_machine_events"]
    list_filter = ["tracking_enabled"]


@admin.register(OptOut)
class OptOutAdmin(ScopedAdmin):
    list_display = ["email", "note", "project", "created_at"]
    search_fields = ["email", "note"]


@admin.register(NetworkList)
class NetworkListAdmin(admin.ModelAdmin):
    """The lists verdicts use. Loaded with `manage.py load_network_list`; the
    page shows each list's date, loaded or shipped."""

    list_display = ["kind", "source", "published_on", "loaded_at", "network_count"]
    readonly_fields = ["kind", "source", "published_on", "loaded_at", "networks"]
    change_list_template = "admin/engagement/networklist/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.display(description=_("networks"))
    def network_count(self, obj):
        return len(obj.networks.splitlines())

    def changelist_view(self, request, extra_context=None):
        loaded = set(NetworkList.objects.values_list("kind", flat=True))
        shipped = [
            {"kind": label, "published": networks.shipped_published(kind), "in_use": kind not in loaded}
            for kind, label in NetworkKind.choices
        ]
        return super().changelist_view(request, {**(extra_context or {}), "shipped_lists": shipped})
