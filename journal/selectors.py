"""Reads for the journal: which projects and leads a user may see, and pages of them.

Every read starts from `projects_for_user`, so a lead of another tenant is
never found, whatever id or filter a request carries.
"""

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from attribution.models import Lead, MatchKind
from mailbox_sync.models import Letter, LetterCopy
from mailbox_sync.selectors import response_times
from projects.models import Membership, Project
from projects.selectors import projects_for_user

PAGE_SIZE = 50
SESSION_KEY = "journal_project"

# The letter may be from someone other than the visitor the lead names: the
# journal marks these so nobody reads them as certain.
LOW_CONFIDENCE = frozenset({MatchKind.REUSED_SINCE, MatchKind.AMBIGUOUS, MatchKind.TAKEN_OVER})
# No visitor was found at all: the lead has no web source.
NO_SOURCE = frozenset({MatchKind.UNKNOWN, MatchKind.EXHAUSTED})

MATCH_EXPLANATIONS = {
    MatchKind.LIVE_LEASE: _("The address was leased to this visitor when the letter arrived."),
    MatchKind.AFTER_HOLD: _("The visitor's hold on the address had ended, but nobody else has held it since."),
    MatchKind.REUSED_SINCE: _(
        "The visitor's hold had ended and another visitor has held the address since: the letter may come from either."
    ),
    MatchKind.TAKEN_OVER: _(
        "The pool had run dry, so the address was taken from another visitor whose hold had not ended: "
        "the letter may come from that earlier visitor."
    ),
    MatchKind.STATIC: _("Sent to a static address: one address stands for one channel."),
    MatchKind.CORRECTED: _("The address had a mistyped token one edit away from exactly one issued token."),
    MatchKind.AMBIGUOUS: _(
        "The address had a token that was no issued token and close to several: no visitor could be chosen."
    ),
    MatchKind.UNKNOWN: _("Sent to an address that identifies no visitor (the site's main address)."),
    MatchKind.EXHAUSTED: _(
        "Sent to the main address while the pool had run dry: no visitor could be shown an address of their own."
    ),
}


def journal_projects(user) -> list[Project]:
    return list(projects_for_user(user).order_by("name", "id"))


def current_project(request, projects: list[Project]) -> Project | None:
    """The project the journal shows: `?project=ID` (404 unless it is one of
    the user's), else the one chosen last in this browser session, else the first."""
    by_id = {project.pk: project for project in projects}
    wanted = request.GET.get("project", "")
    if wanted:
        try:
            project = by_id[int(wanted)]
        except (KeyError, ValueError):
            raise Http404(_("No such project"))
    else:
        project = by_id.get(request.session.get(SESSION_KEY)) or (projects[0] if projects else None)
    if project is not None and request.session.get(SESSION_KEY) != project.pk:
        request.session[SESSION_KEY] = project.pk
    return project


def leads_for_user(user) -> QuerySet[Lead]:
    return Lead.objects.filter(project__in=projects_for_user(user))


def can_edit_leads(user, project: Project) -> bool:
    """Marketers and managers of the lead's project edit status, tags, comment
    and deal amount; configuration stays with managers (in admin)."""
    if user.is_superuser:
        return True
    return Membership.objects.filter(
        user=user, project=project, role__in=[Membership.Role.MANAGER, Membership.Role.MARKETER]
    ).exists()


def parse_cursor(text: str) -> tuple[datetime, int] | None:
    try:
        at_text, id_text = text.rsplit("|", 1)
        at, lead_id = datetime.fromisoformat(at_text), int(id_text)
    except ValueError:
        return None
    return (at, lead_id) if at.tzinfo is not None else None


def make_cursor(lead: Lead) -> str:
    return f"{lead.created_at.isoformat()}|{lead.pk}"


def after_cursor(leads: QuerySet[Lead], before: str) -> QuerySet[Lead]:
    """Newest first, strictly older than the cursor "<iso time>|<id>". The
    redundant `created_at <= at` lets the index scan start at the cursor
    instead of filtering its way down from the newest lead, so a deep page
    costs what the first one does."""
    leads = leads.order_by("-created_at", "-id")
    position = parse_cursor(before) if before else None
    if position is None:
        return leads
    at, lead_id = position
    return leads.filter(created_at__lte=at).filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=lead_id))


def journal_page(leads: QuerySet[Lead], before: str = "", size: int = PAGE_SIZE) -> tuple[list[Lead], str]:
    """One page of `leads`, newest first, after the cursor `before`; the
    second value is the next page's cursor ("" on the last page)."""
    # The page's ids first, then its rows: the ids come off an index alone
    # (the filter's composite index holds project, column, time and id), so
    # a filter that must look at other rows too (a tag) skips thousands of
    # leads without reading one of them from the table; only the page's own
    # rows are read in full.
    ids = after_cursor(leads, before).values("pk")[: size + 1]
    page = list(Lead.objects.filter(pk__in=ids).order_by("-created_at", "-id"))
    if len(page) <= size:
        return page, ""
    page = page[:size]
    return page, make_cursor(page[-1])


def with_tag_names(leads: list[Lead]) -> list[Lead]:
    """Set `tag_names` on each lead from one query. Cheaper than
    prefetch_related, whose per-lead `tags.all()` costs a queryset each."""
    names: dict[int, list[str]] = {lead.pk: [] for lead in leads}
    links = Lead.tags.through.objects.filter(lead_id__in=names).order_by("tag__name")
    for lead_id, name in links.values_list("lead_id", "tag__name"):
        names[lead_id].append(name)
    for lead in leads:
        lead.tag_names = names[lead.pk]
    return leads


def lead_letters(lead: Lead) -> list[Letter]:
    """The lead's letters, each with the other places it was seen (`copies`)."""
    return list(
        Letter.objects.filter(lead=lead)
        .order_by("received_at", "id")
        .only(
            "received_at",
            "date_header",
            "sender_email",
            "sender_name",
            "subject",
            "recipients",
            "text",
            "attachments",
            "truncated",
            "malformed",
            "message_id",
            "message_id_reused",
            "folder",
            "lead_id",
        )
        .prefetch_related(
            Prefetch("copies", queryset=LetterCopy.objects.only("letter_id", "folder", "origin", "received_at"))
        )
    )


def lead_response_time(lead: Lead):
    """From the lead's first letter to the first reply, when a reply is known."""
    return response_times([lead.pk]).get(lead.pk)
