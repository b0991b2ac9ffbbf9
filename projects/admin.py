from django.contrib import admin

from .admin_scoping import ScopedAdmin, ScopedTabularInline
from .models import Membership, Project
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
