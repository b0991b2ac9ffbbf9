from django.contrib import admin
from django.db.models import F
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin

from .models import Condition


class OpenFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", _("Open")), ("no", _("Ended"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(ended_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(ended_at__isnull=False)
        return queryset


@admin.register(Condition)
class HealthAdmin(ScopedAdmin):
    """The Health page: open conditions first, then their history."""

    list_display = ["summary", "project", "kind", "state", "started_at", "ended_at"]
    list_filter = [OpenFilter, "kind"]
    search_fields = ["summary", "subject"]
    readonly_fields = ["project", "kind", "subject", "summary", "details", "started_at", "ended_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).order_by(F("ended_at").desc(nulls_first=True), "-started_at")

    @admin.display(description=_("state"))
    def state(self, obj):
        return _("Open") if obj.is_open else _("Ended")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
