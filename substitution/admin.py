from django.contrib import admin, messages
from django.utils import timezone

from projects.admin_scoping import ScopedAdmin

from . import selectors, services
from .models import Address, Block, Lease, Pool, PoolExhaustion, Rule


@admin.register(Pool)
class PoolAdmin(ScopedAdmin):
    list_display = ["name", "project", "kind", "base_email", "size", "hold_minutes", "live_leases", "exhausted_policy"]
    list_filter = ["kind", "exhausted_policy"]
    search_fields = ["name", "base_email"]
    readonly_fields = ["live_leases", "exhaustions_7d"]

    def get_readonly_fields(self, request, obj=None):
        fixed = ["kind", "base_email"] if obj is not None else []
        return fixed + self.readonly_fields

    @admin.display(description="Live leases")
    def live_leases(self, obj):
        return selectors.live_lease_count(obj, timezone.now()) if obj.pk else 0

    @admin.display(description="Exhaustions (7 days)")
    def exhaustions_7d(self, obj):
        return selectors.exhaustion_count(obj, timezone.now()) if obj.pk else 0

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        try:
            changed = services.pool_fill(obj)
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        if changed > 0:
            self.message_user(request, f"{changed} addresses issued.")
        elif changed < 0:
            self.message_user(request, f"{-changed} free addresses set aside; live leases were kept.")


@admin.register(Address)
class AddressAdmin(ScopedAdmin):
    project_path = "pool__project"
    list_display = ["email", "pool", "active", "last_released_at"]
    list_filter = ["active"]
    search_fields = ["email", "token"]
    readonly_fields = ["pool", "email", "token", "last_released_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Block)
class BlockAdmin(ScopedAdmin):
    list_display = ["name", "project", "kind", "selector"]


@admin.register(Rule)
class RuleAdmin(ScopedAdmin):
    list_display = ["name", "project", "order", "active", "kind", "pool"]
    list_editable = ["order", "active"]
    filter_horizontal = ["sites", "blocks"]


@admin.register(Lease)
class LeaseAdmin(ScopedAdmin):
    project_path = "pool__project"
    list_display = ["address", "visitor", "started_at", "last_activity_at", "expires_at", "released_at", "end_reason"]
    list_filter = ["end_reason"]
    search_fields = ["address__email", "visitor__vid"]
    date_hierarchy = "started_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PoolExhaustion)
class PoolExhaustionAdmin(ScopedAdmin):
    project_path = "pool__project"
    list_display = ["pool", "at", "policy"]
    readonly_fields = ["pool", "at", "policy"]

    def has_add_permission(self, request, obj=None):
        return False
