from zoneinfo import ZoneInfo

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .selectors import journal_page


@login_required
def lead_list(request):
    leads, cursor = journal_page(request.user, request.GET.get("before", ""))
    for lead in leads:
        lead.local_time = lead.created_at.astimezone(ZoneInfo(lead.project.time_zone))
    return render(request, "journal/list.html", {"leads": leads, "cursor": cursor})
