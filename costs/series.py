"""Conversion and cost per lead by source, day by day, for the report's
charts: the sources with the most leads and cost in the period, each a line
of per-day values (None on a day without sessions or leads)."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Lower, TruncDate

from attribution.models import Lead
from tracker.models import Session

from . import ranked, rollups
from .endtoend import period_bounds
from .models import Cost, CostSourceDay

TOP_SOURCES = 5


@dataclass
class SourceSeries:
    source: str
    conversion: list[float | None]  # leads per 100 sessions, per day
    cost_per_lead: list[Decimal | None]


def _days_by_source(rows, counted: str, chosen: list[str] | None):
    """[{day, s, n}] of the day rows' `counted`, by lower-cased source (those in `chosen`, if given)."""
    rows = rows.annotate(s=Lower("source"))
    if chosen is not None:
        rows = rows.filter(s__in=chosen)
    return rows.values("day", "s").annotate(n=Sum(counted)).filter(n__gt=0).order_by()


def daily_by_source(
    project, leads: QuerySet[Lead] | None, start: date, end: date
) -> tuple[list[date], list[SourceSeries]]:
    """`leads` None: every lead of the project in the period, from the report days when they are ready."""
    tz = ZoneInfo(project.time_zone)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    first, after = period_bounds(project.time_zone, start, end)
    chosen = None
    if leads is None and rollups.ready(project):
        if ranked.available():
            # The top sources first, ranked by the database from the period's
            # rows; then the days of those sources only.
            chosen = top_sources(project, start, end)
        lead_rows = _days_by_source(rollups.report_days_daily(project, start, end, "source"), "leads", chosen)
        session_rows = _days_by_source(rollups.session_days_daily(project, start, end, "source"), "sessions", chosen)
    else:
        if leads is None:
            leads = Lead.objects.filter(project=project, created_at__gte=first, created_at__lt=after)
        lead_rows = (
            leads.annotate(day=TruncDate("created_at", tzinfo=tz), s=Lower("source"))
            .values("day", "s")
            .annotate(n=Count("id"))
            .order_by()
        )
        session_rows = (
            Session.objects.filter(visitor__site__project=project, started_at__gte=first, started_at__lt=after)
            .annotate(day=TruncDate("started_at", tzinfo=tz), s=Lower("source"))
            .values("day", "s")
            .annotate(n=Count("id"))
            .order_by()
        )
    if chosen is not None:
        # A row per day and source (kept by the costs' trigger), not one per campaign.
        costs = CostSourceDay.objects.filter(project_id=project.pk, day__gte=start, day__lte=end, costs__gt=0)
        costs = costs.annotate(s=Lower("source")).filter(s__in=chosen)
    else:
        costs = Cost.objects.filter(project=project, day__gte=start, day__lte=end).annotate(s=Lower("source"))
    cost_rows = costs.values("day", "s").annotate(total=Sum("amount")).order_by()
    leads_at = {(r["day"], r["s"]): r["n"] for r in lead_rows}
    sessions_at = {(r["day"], r["s"]): r["n"] for r in session_rows}
    costs_at = {(r["day"], r["s"]): r["total"] for r in cost_rows}
    weight: dict[str, float] = {}
    for (_day, source), n in leads_at.items():
        weight[source] = weight.get(source, 0) + n * 1_000_000
    for (_day, source), total in costs_at.items():
        weight[source] = weight.get(source, 0) + float(total)
    top = sorted(weight, key=lambda s: (-weight[s], s))[:TOP_SOURCES] if chosen is None else chosen
    series = []
    for source in top:
        conversion, per_lead = [], []
        for day in days:
            n_leads, n_sessions = leads_at.get((day, source), 0), sessions_at.get((day, source), 0)
            cost = costs_at.get((day, source))
            conversion.append(round(100 * n_leads / n_sessions, 2) if n_sessions else None)
            per_lead.append((cost / n_leads).quantize(Decimal("0.01")) if cost is not None and n_leads else None)
        series.append(SourceSeries(source, conversion, per_lead))
    return days, series


def top_sources(project, start: date, end: date) -> list[str]:
    """The TOP_SOURCES sources (lowercase) with the most leads in the period
    (from the report days), then the most cost: a lead weighs a million of
    the currency's units, as the chart's Python ranking weighs them."""
    lead_part = rollups.report_days(project, start, end, "source").values("source").annotate(n=Sum("leads")).order_by()
    parts = [ranked.Part(lead_part, ["source"], {"leads": "n"})]
    for rows in rollups.cost_period(project, start, end):
        cost_part = rows.values("source").annotate(total=Sum("amount"), n=Count("id")).order_by()
        parts.append(ranked.Part(cost_part, ["source"], {"cost": "total", "cost_rows": "n"}))
    page = ranked.ranked_page(
        parts,
        {"leads": "count", "cost": "money", "cost_rows": "count"},
        ["leads * 1000000 + cost"],
        1,
        0,
        TOP_SOURCES,
        lowercase=True,
        present="sum(leads) > 0 OR sum(cost_rows) > 0",
    )
    return [row["key"][0] for row in page.rows]
