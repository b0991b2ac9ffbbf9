from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin, ScopedTabularInline
from tracker.admin import SiteAdmin

from .models import MissingBlockReport, SnippetSettings


class SnippetSettingsInline(ScopedTabularInline):
    model = SnippetSettings
    parent_project_path = "project"
    can_delete = False
    extra = 1  # unchanged, it saves nothing: a site without a row has the defaults
    max_num = 1
    verbose_name_plural = _("snippet settings")


class MissingBlockReportInline(ScopedTabularInline):
    """Install check on the site's page: where a block's address was not found.
    Rows can be deleted (e.g. once the page is fixed); the snippet adds them."""

    model = MissingBlockReport
    parent_project_path = "project"
    extra = 0
    fields = ["block", "page_url", "last_seen_at", "first_seen_at", "reports"]
    readonly_fields = fields
    verbose_name_plural = _("install check: pages without a block's address (newest first)")

    def has_add_permission(self, request, obj=None):
        return False


# Shown on the site's admin page, beside its domains and when the snippet last
# reported from each.
SiteAdmin.inlines = [*SiteAdmin.inlines, SnippetSettingsInline, MissingBlockReportInline]


@admin.register(MissingBlockReport)
class MissingBlockReportAdmin(ScopedAdmin):
    project_path = "site__project"
    list_display = ["page_url", "block", "site", "last_seen_at", "reports"]
    list_filter = [("site", admin.RelatedOnlyFieldListFilter)]  # the user's own sites only
    search_fields = ["page_url"]
    date_hierarchy = "last_seen_at"

    def get_readonly_fields(self, request, obj=None):
        return ["site", "block", "page_url", "first_seen_at", "last_seen_at", "reports"]

    def has_add_permission(self, request, obj=None):
        return False
