from django.contrib import admin

from projects.admin_scoping import ScopedAdmin

from .models import Exclusion, Lead, Tag


@admin.register(Lead)
class LeadAdmin(ScopedAdmin):
    list_display = [
        "created_at",
        "sender_email",
        "subject",
        "channel",
        "source",
        "campaign",
        "match_kind",
        "first_contact",
        "status",
    ]
    list_filter = ["channel", "match_kind", "status", "first_contact"]
    search_fields = ["sender_email", "subject", "campaign", "source"]
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name != "status"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Only the project's managers delete leads (marketers set their status).
        return super().has_change_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        # Marketers may set a lead's status too.
        if obj is not None and not request.user.is_superuser:
            return self.has_view_permission(request, obj)
        return super().has_change_permission(request, obj) or self.has_view_permission(request, obj)


@admin.register(Exclusion)
class ExclusionAdmin(ScopedAdmin):
    list_display = ["value", "note", "project"]
    search_fields = ["value", "note"]


@admin.register(Tag)
class TagAdmin(ScopedAdmin):
    list_display = ["name", "project"]
    search_fields = ["name"]
