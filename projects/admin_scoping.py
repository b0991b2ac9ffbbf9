"""Admin that shows a user only the objects of their own projects.

Each admin names `project_path`, the lookup from its model to Project. A
superuser sees everything but a simulation's scratch project; anyone else sees
the objects of projects they are a member of, and may change them only as that
project's manager.
"""

from django.contrib import admin
from django.core.exceptions import FieldError

from .models import Project
from .selectors import managed_project_ids, projects_for_user


class ProjectScopedMixin:
    project_path = "project"

    def _project_of(self, obj):
        for part in self.project_path.split("__"):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs.filter(**{f"{self.project_path}__scratch": False})
        return qs.filter(**{f"{self.project_path}__in": projects_for_user(request.user)}).distinct()

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        if not (request.user.is_active and request.user.is_staff):
            return False
        if request.user.is_superuser or obj is None:
            return True
        project = self._project_of(obj)
        return project is not None and projects_for_user(request.user).filter(pk=project.pk).exists()

    def has_change_permission(self, request, obj=None):
        if not (request.user.is_active and request.user.is_staff):
            return False
        if request.user.is_superuser:
            return True
        managed = managed_project_ids(request.user)
        if obj is None:
            return bool(managed)
        project = self._project_of(obj)
        return project is not None and project.pk in managed

    def has_add_permission(self, request, obj=None):
        return self.has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            field = super().formfield_for_foreignkey(db_field, request, **kwargs)
            if field is not None:
                field.queryset = _scope(field.queryset, request.user)
            return field
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and not request.user.is_superuser:
            field.queryset = _scope(field.queryset, request.user)
        return field


def _scope(queryset, user):
    """Limit a choice list to the user's managed projects."""
    model = queryset.model
    managed = managed_project_ids(user)
    if model is Project:
        return queryset.filter(pk__in=managed)
    for path in ("project", "site__project", "pool__project", "mailbox__project", "visitor__site__project"):
        try:
            return queryset.filter(**{f"{path}__in": managed})
        except FieldError:  # this model does not reach Project that way
            continue
    return queryset.none()


class ScopedAdmin(ProjectScopedMixin, admin.ModelAdmin):
    pass


class ScopedTabularInline(admin.TabularInline):
    """An inline whose rights follow its parent object's project.

    `parent_project_path` leads from the parent object to Project."""

    parent_project_path = "project"

    def _parent_managed(self, request, obj):
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(managed_project_ids(request.user))
        project = obj
        for part in self.parent_project_path.split("__"):
            project = getattr(project, part, None) if part != "pk" else project
        return project is not None and project.pk in managed_project_ids(request.user)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff and self._parent_managed(request, obj)

    has_add_permission = has_change_permission
    has_delete_permission = has_change_permission

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and not request.user.is_superuser:
            field.queryset = _scope(field.queryset, request.user)
        return field
