"""Reads for the API. Every query starts from one project (the API key's)."""

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Q, QuerySet
from django.utils import timezone

from attribution.models import Lead
from costs import endtoend
from costs.response import first_reply_at
from costs.services import project_currency
from mailbox_sync.models import Letter, Mailbox
from projects.models import Project
from substitution.models import Pool, StaticAddress
from tracker.models import Site

LEAD_ORDERINGS = {
    "-created_at": ("-created_at", "-id"),
    "created_at": ("created_at", "id"),
    "-updated_at": ("-updated_at", "-id"),
    "updated_at": ("updated_at", "id"),
}

SUMMARY_GROUPS = endtoend.GROUPINGS
SUMMARY_COLUMNS = ("channel", "source", "medium", "campaign", "keyword", "site", "block", "mailbox")
EARLIEST, LATEST = date(1970, 1, 1), date(9000, 1, 1)


def project_leads(project: Project, filters: dict) -> QuerySet[Lead]:
    """The project's leads narrowed by the journal's filters (all optional)."""
    leads = Lead.objects.filter(project=project).prefetch_related("tags").annotate(first_reply_at=first_reply_at())
    exact = {
        "site": "site_id",
        "channel": "channel",
        "source": "source",
        "medium": "medium",
        "campaign": "campaign",
        "match_kind": "match_kind",
        "status": "status",
    }
    for name, field in exact.items():
        if filters.get(name) not in (None, ""):
            leads = leads.filter(**{field: filters[name]})
    if filters.get("first_contact") is not None:
        leads = leads.filter(first_contact=filters["first_contact"])
    if filters.get("created_after"):
        leads = leads.filter(created_at__gte=filters["created_after"])
    if filters.get("created_before"):
        leads = leads.filter(created_at__lt=filters["created_before"])
    if filters.get("updated_since"):
        leads = leads.filter(updated_at__gte=filters["updated_since"])
    if filters.get("tag"):
        tagged = Lead.tags.through.objects.filter(tag__project=project, tag__name__iexact=filters["tag"])
        leads = leads.filter(pk__in=tagged.values("lead_id"))
    if filters.get("q"):
        q = filters["q"]
        leads = leads.filter(Q(sender_email__icontains=q) | Q(sender_name__icontains=q) | Q(subject__icontains=q))
    return leads


def project_lead(project: Project, lead_id: int) -> Lead | None:
    """One lead with its letters (oldest first) and session, or None if it is not this project's."""
    lead = Lead.objects.filter(project=project, pk=lead_id).select_related("session").prefetch_related("tags").first()
    if lead is not None:
        lead.api_letters = list(
            Letter.objects.filter(lead=lead)
            .order_by("received_at", "id")
            .only(
                "mailbox_id",
                "received_at",
                "date_header",
                "sender_email",
                "sender_name",
                "subject",
                "recipients",
                "text",
                "attachments",
            )
        )
    return lead


def project_sites(project: Project) -> QuerySet[Site]:
    return Site.objects.filter(project=project).prefetch_related("domains")


def project_pools(project: Project) -> QuerySet[Pool]:
    return Pool.objects.filter(project=project).select_related("project")


def project_static_addresses(project: Project) -> QuerySet[StaticAddress]:
    return StaticAddress.objects.filter(project=project)


def project_mailboxes(project: Project) -> QuerySet[Mailbox]:
    return Mailbox.objects.filter(project=project).defer("password_encrypted")


def summary_period(project: Project, date_from: date | None, date_to: date | None) -> tuple[date, date]:
    """Default: the last 30 days, today included, in the project's time zone."""
    today = timezone.now().astimezone(ZoneInfo(project.time_zone)).date()
    date_to = date_to or today
    date_from = date_from or date_to - timedelta(days=29)
    return date_from, date_to


def lead_summary(project: Project, date_from: date, date_to: date, group_by: str) -> dict:
    """The end-to-end figures of the period (days in the project's time zone,
    both ends included) per group (`costs.endtoend.GROUPINGS`): sessions,
    leads, first contacts, won leads, deal amount, cost and what follows."""
    # Days far outside any lead's life are clamped, so that no date can overflow in time zone arithmetic.
    first, last = max(date_from, EARLIEST), min(date_to, LATEST)
    start, end = endtoend.period_bounds(project.time_zone, first, last)
    leads = Lead.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    report = endtoend.end_to_end(project=project, leads=leads, date_from=first, date_to=last, grouping=group_by)

    def row(figures: endtoend.Row) -> dict:
        out = dict.fromkeys(SUMMARY_COLUMNS)
        out.update(zip(report.fields, figures.key, strict=False))
        out.update(
            sessions=figures.sessions,
            leads=figures.leads,
            first_contact=figures.first_contacts,
            won=figures.deals,
            deal_amount=figures.amount,
            conversion=figures.conversion,
            cost=figures.cost,
            cost_per_lead=figures.cost_per_lead,
            cost_per_deal=figures.cost_per_deal,
            roi=figures.roi,
            **figures.extra,
        )
        return out

    return {
        "date_from": date_from,
        "date_to": date_to,
        "time_zone": project.time_zone,
        "group_by": group_by,
        "currency": project_currency(project),
        "total": row(report.total),
        "rows": [row(figures) for figures in report.rows],
    }
