from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm

from .admin_scoping import ScopedAdmin, ScopedTabularInline
from .logins import LimitedLogin
from .models import LoginLockout, Membership, Project
from .selectors import projects_for_user


class MembershipInline(ScopedTabularInline):
    model = Membership
    parent_project_path = "pk"
    extra = 1


@admin.register(Project)
class ProjectAdmin(ScopedAdmin):
    project_path = "pk"
    list_display = ["name", "time_zone", "language", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]

    def _project_of(self, obj):
        return obj

    def get_queryset(self, request):
        return projects_for_user(request.user)

    def has_add_permission(self, request, obj=None):
        return request.user.is_superuser


class AdminLoginForm(LimitedLogin, AdminAuthenticationForm):
    """The admin's sign-in with the one limit of every sign-in."""

    login_place = "admin"


admin.site.login_form = AdminLoginForm


@admin.register(LoginLockout)
class LoginLockoutAdmin(admin.ModelAdmin):
    """Sign-ins refused after too many failures: superusers only, read-only."""

    list_display = ["at", "where", "username", "client_address", "reason", "until"]
    list_filter = ["where", "reason"]
    search_fields = ["username", "client_address"]
    readonly_fields = list_display

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
