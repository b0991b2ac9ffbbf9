from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .selectors import journal_page


@login_required
def lead_list(request):
    leads, cursor = journal_page(request.user, request.GET.get("before", ""))
    return render(request, "journal/list.html", {"leads": leads, "cursor": cursor})
