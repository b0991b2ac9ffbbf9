from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from projects.admin_scoping import ScopedAdmin
from projects.models import Project
from projects.selectors import managed_project_ids

from .forms import CostUploadForm
from .models import Cost, CostCurrency
from .views import upload_step


class AdminCostUploadForm(CostUploadForm):
    project = forms.ModelChoiceField(Project.objects.none(), label=_("project"))

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = Project.objects.filter(pk__in=managed_project_ids(user))


@admin.register(Cost)
class CostAdmin(ScopedAdmin):
    list_display = ["day", "project", "source", "medium", "campaign", "amount", "origin", "updated_at"]
    list_filter = ["origin", "source", "day"]
    search_fields = ["source", "medium", "campaign"]
    date_hierarchy = "day"
    change_list_template = "admin/costs/cost/change_list.html"

    def get_urls(self):
        upload = self.admin_site.admin_view(self.upload_view)
        return [path("upload/", upload, name="costs_cost_upload"), *super().get_urls()]

    def upload_view(self, request):
        """Upload a CSV of costs into one of the projects the person manages."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AdminCostUploadForm(request.POST or None, request.FILES or None, user=request.user)
        project_id = request.POST.get("project") or request.session.get("costs_upload_project")
        managed = managed_project_ids(request.user)
        project = Project.objects.filter(pk=project_id, pk__in=managed).first() if project_id else None
        if request.method == "POST" and not request.POST.get("confirm"):
            if form.is_valid():
                project = form.cleaned_data["project"]
                request.session["costs_upload_project"] = project.pk
            else:
                project = None
        if request.method == "POST" and request.POST.get("confirm") and project is None:
            raise PermissionDenied
        context, done = upload_step(request, project, form if request.method == "POST" else None)
        if done:
            return redirect(reverse("admin:costs_cost_changelist"))
        if not isinstance(context["form"], AdminCostUploadForm):
            context["form"] = AdminCostUploadForm(user=request.user)
        context.update(self.admin_site.each_context(request), title=_("Upload costs (CSV)"), opts=self.model._meta)
        return TemplateResponse(request, "admin/costs/cost/upload.html", context)


@admin.register(CostCurrency)
class CostCurrencyAdmin(ScopedAdmin):
    list_display = ["project", "currency"]
