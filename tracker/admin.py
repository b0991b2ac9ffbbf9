from django.contrib import admin
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin, ScopedTabularInline

from .models import BotHit, Session, Site, SiteDomain, Visitor


class SiteDomainInline(ScopedTabularInline):
    model = SiteDomain
    parent_project_path = "project"
    extra = 1
    readonly_fields = ["last_seen_at"]


@admin.register(Site)
class SiteAdmin(ScopedAdmin):
    list_display = ["name", "project", "original_email", "site_key", "active"]
    list_filter = ["active"]
    search_fields = ["name", "original_email"]
    readonly_fields = ["site_key", "snippet_tag"]
    inlines = [SiteDomainInline]  # apps that keep more about a site add their inlines

    @admin.display(description=_("Snippet tag"))
    def snippet_tag(self, obj):
        if not obj.pk:
            return _("Saved sites get a tag to paste into every page.")
        return format_html(
            '<code>&lt;script async src="https://YOUR-HOST/s/{}.js"&gt;&lt;/script&gt;</code>', obj.site_key
        )


class SessionInline(admin.TabularInline):
    model = Session
    extra = 0
    can_delete = False
    fields = [
        "started_at",
        "channel",
        "source",
        "source_inherited",
        "utm_campaign",
        "keyword",
        "landing_url",
        "page_views",
        "device_type",
        "browser",
        "country",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff


@admin.register(Visitor)
class VisitorAdmin(ScopedAdmin):
    project_path = "site__project"
    list_display = ["vid", "site", "created_at", "last_seen_at"]
    search_fields = ["vid"]
    readonly_fields = ["site", "vid", "created_at", "last_seen_at"]
    inlines = [SessionInline]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Session)
class SessionAdmin(ScopedAdmin):
    project_path = "visitor__site__project"
    list_display = [
        "started_at",
        "visitor",
        "channel",
        "source",
        "utm_campaign",
        "keyword",
        "source_inherited",
        "page_views",
        "device_type",
        "browser",
        "country",
        "returning_visitor",
    ]
    list_filter = ["channel", "source_inherited", "returning_visitor", "device_type"]
    search_fields = ["visitor__vid", "utm_campaign", "source"]
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(BotHit)
class BotHitAdmin(ScopedAdmin):
    """Known bots are shown the original address and counted here, per day."""

    project_path = "site__project"
    list_display = ["day", "site", "count"]
    search_fields = ["site__name"]
    date_hierarchy = "day"

    def get_readonly_fields(self, request, obj=None):
        return ["site", "day", "count"]

    def has_add_permission(self, request, obj=None):
        return False
