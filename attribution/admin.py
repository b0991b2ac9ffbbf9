import json

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from projects.admin_scoping import ScopedAdmin
from projects.selectors import managed_project_ids

from . import privacy
from .models import Exclusion, Lead, Tag


def _people(leads) -> list:
    """(project, sender address) of the selected leads, each once."""
    seen, pairs = set(), []
    for lead in leads.exclude(sender_email="").select_related("project").order_by("project_id", "sender_email"):
        key = (lead.project_id, lead.sender_email.lower())
        if key not in seen:
            seen.add(key)
            pairs.append((lead.project, key[1]))
    return pairs


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
    actions = ["export_person_data", "erase_person_data"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Erasure is for the project's managers, never its marketers.
        if not request.user.is_superuser and not managed_project_ids(request.user):
            actions.pop("erase_person_data", None)
        return actions

    @admin.action(description=_("Export this person's data"))
    def export_person_data(self, request, queryset):
        documents = privacy.composer().export_people(_people(queryset))
        response = HttpResponse(
            json.dumps(documents, ensure_ascii=False, indent=2, default=str),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = 'attachment; filename="person-data.json"'
        return response

    @admin.action(description=_("Erase this person's data"))
    def erase_person_data(self, request, queryset):
        if not request.user.is_superuser:
            queryset = queryset.filter(project_id__in=managed_project_ids(request.user))
        people = _people(queryset)
        if not people:
            self.message_user(request, _("None of the selected leads has a sender you may erase."), messages.WARNING)
            return None
        composer = privacy.composer()
        if request.POST.get("confirmed") == "yes":
            erased = composer.erase_people(people, by=f"admin:{request.user.get_username()}")
            self.message_user(
                request,
                ngettext(
                    "The data of %(count)d person was erased.", "The data of %(count)d people was erased.", len(erased)
                )
                % {"count": len(erased)},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Erase this person's data?"),
            "opts": self.model._meta,
            "people": [
                (project, email, composer.described(composer.export_person(project, email)))
                for project, email in people
            ],
            "leads": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "privacy/erase_confirmation.html", context)

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
