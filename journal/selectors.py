from datetime import datetime

from django.db.models import Q

from attribution.models import Lead
from projects.selectors import projects_for_user

PAGE_SIZE = 50


def leads_for_user(user):
    return Lead.objects.filter(project__in=projects_for_user(user)).select_related("project")


def journal_page(user, before: str = "") -> tuple[list[Lead], str]:
    """Newest first, keyset-paginated: `before` is the cursor "<iso time>|<id>"
    of the last lead on the previous page; the second value is the next cursor."""
    leads = leads_for_user(user).order_by("-created_at", "-id")
    if before:
        try:
            at_text, id_text = before.rsplit("|", 1)
            at, lead_id = datetime.fromisoformat(at_text), int(id_text)
        except ValueError:
            at = None
        if at is not None:
            leads = leads.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=lead_id))
    page = list(leads[: PAGE_SIZE + 1])
    cursor = ""
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        cursor = f"{page[-1].created_at.isoformat()}|{page[-1].pk}"
    return page, cursor
