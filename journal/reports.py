"""Reports for a period: leads per channel per day (days in the project's
time zone) and a table by source / medium / campaign. The chart is drawn
here as plain numbers for an inline SVG: no script, nothing from elsewhere."""

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from attribution.models import Lead
from costs import rollups
from costs.endtoend import FIELD_LABELS, GROUPING_LABELS, GROUPINGS, Row, end_to_end
from costs.series import daily_by_source
from costs.services import project_currency
from tracker.models import Channel

DEFAULT_DAYS = 30
MAX_DAYS = 366
TABLE_ROWS = 500  # at most, in a CSV
PAGE_ROWS = 50  # per page of a table on the page: a page costs the same whatever the shop's size

# Fixed per channel so a colour means the same thing in every report.
CHANNEL_COLOURS = {
    Channel.PAID: "#1f77b4",
    Channel.ORGANIC: "#2ca02c",
    Channel.PAID_SOCIAL: "#9467bd",
    Channel.SOCIAL: "#e377c2",
    Channel.DISPLAY: "#8c564b",
    Channel.REFERRAL: "#ff7f0e",
    Channel.EMAIL: "#17becf",
    Channel.DIRECT: "#7f7f7f",
    Channel.STATIC: "#bcbd22",
    Channel.UNKNOWN: "#c7c7c7",
}

# Chart geometry, in SVG user units.
PLOT_LEFT, PLOT_TOP, PLOT_HEIGHT, PLOT_WIDTH, AXIS_HEIGHT = 44, 10, 200, 900, 40


@dataclass
class Segment:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass
class Label:
    x: float
    y: float
    text: str


@dataclass
class Chart:
    width: int
    height: int
    segments: list[Segment] = field(default_factory=list)
    x_labels: list[Label] = field(default_factory=list)
    y_labels: list[Label] = field(default_factory=list)


@dataclass
class SourceRow:
    source: str
    medium: str
    campaign: str
    leads: int
    first_contacts: int
    amount: Decimal

    @property
    def first_contact_share(self) -> float:
        return 100 * self.first_contacts / self.leads if self.leads else 0.0


@dataclass
class Report:
    start: date
    end: date
    days: list[date]
    # {day: {channel: leads}}, every day of the period present.
    per_day: dict[date, dict[str, int]]
    day_totals: list[tuple[date, int]]
    channels: list[tuple[str, str, str, int]]  # value, label, colour, leads
    rows: list[SourceRow]
    more_rows: int
    total: SourceRow
    chart: Chart


def from_report_days(project, form) -> bool:
    """A report of every lead of a period (no filter but the dates) reads the
    project's report days, when they are counted in its time zone; any other
    filter needs the leads themselves."""
    return not set(form.values) - {"date_from", "date_to"} and rollups.ready(project)


def default_period(today: date) -> tuple[date, date]:
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def nice_ceiling(value: int) -> int:
    """The axis top: the smallest 1, 2 or 5 times a power of ten at or above `value`."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def draw(days: list[date], per_day: dict[date, dict[str, int]], order: list[str]) -> Chart:
    """Stacked bars, one per day, channels in a fixed order from the bottom."""
    chart = Chart(width=PLOT_LEFT + PLOT_WIDTH + 10, height=PLOT_TOP + PLOT_HEIGHT + AXIS_HEIGHT)
    top = nice_ceiling(max((sum(counts.values()) for counts in per_day.values()), default=0) or 1)
    slot = PLOT_WIDTH / max(len(days), 1)
    bar = max(slot * 0.8, 1.0)
    labels = {channel: label for channel, label in Channel.choices}
    for i, day in enumerate(days):
        x = PLOT_LEFT + i * slot + (slot - bar) / 2
        base = PLOT_TOP + PLOT_HEIGHT
        for channel in order:
            count = per_day[day].get(channel, 0)
            if not count:
                continue
            height = PLOT_HEIGHT * count / top
            base -= height
            title = f"{day:%Y-%m-%d} · {labels.get(channel, channel)}: {count}"
            chart.segments.append(
                Segment(
                    round(x, 2),
                    round(base, 2),
                    round(bar, 2),
                    round(height, 2),
                    CHANNEL_COLOURS.get(channel, "#999"),
                    title,
                )
            )
    every = max(1, round(len(days) / 10))
    for i, day in enumerate(days):
        if i % every == 0:
            chart.x_labels.append(
                Label(round(PLOT_LEFT + (i + 0.5) * slot, 2), PLOT_TOP + PLOT_HEIGHT + 16, date_format(day, "j M"))
            )
    for value in (0, top // 2, top) if top > 1 else (0, top):
        y = PLOT_TOP + PLOT_HEIGHT - PLOT_HEIGHT * value / top
        chart.y_labels.append(Label(PLOT_LEFT - 6, round(y, 2), str(value)))
    return chart


def page_rows(page: int) -> tuple[int, int]:
    """The first row and the number of rows of a page of a report's table."""
    size = min(TABLE_ROWS, PAGE_ROWS)
    return (max(page, 1) - 1) * size, size


def build_report(
    leads: QuerySet[Lead] | None, time_zone: str, start: date, end: date, *, project=None, page: int = 1
) -> Report:
    """Counts of `leads` (already filtered to the period and the project);
    `leads` None: every lead of `project` in the period, from its report days.
    The table holds the `page`th page of its rows, the largest first."""
    tz = ZoneInfo(time_zone)
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    per_day: dict[date, dict[str, int]] = {day: {} for day in days}
    first, size = page_rows(page)
    table = None
    if leads is None:
        by_day = rollups.leads_per_day_and_channel(project, start, end)
        # Ranked and paged by the database: the page's rows only, with the count and sums of all.
        table = rollups.leads_per_campaign(project, start, end, first, size)
    else:
        by_day = (
            leads.annotate(day=TruncDate("created_at", tzinfo=tz))
            .values("day", "channel")
            .annotate(n=Count("id"))
            .order_by()
        )
        grouped = (
            leads.values("source", "medium", "campaign")
            .annotate(
                leads=Count("id"), first_contacts=Count("id", filter=Q(first_contact=True)), amount=Sum("deal_amount")
            )
            .order_by()
        )
    channel_totals: dict[str, int] = {}
    for row in by_day:
        if row["day"] in per_day:
            per_day[row["day"]][row["channel"]] = row["n"]
        channel_totals[row["channel"]] = channel_totals.get(row["channel"], 0) + row["n"]
    order = [value for value, _label in Channel.choices]
    channels = [
        (value, label, CHANNEL_COLOURS[value], channel_totals[value])
        for value, label in Channel.choices
        if channel_totals.get(value)
    ]
    if table is not None:
        rows = [
            SourceRow(*row["key"], row["leads"], row["first_contacts"], row["amount"] or Decimal("0.00"))
            for row in table.rows
        ]
        sums = table.totals
        total = SourceRow("", "", "", sums["leads"], sums["first_contacts"], sums["amount"] or Decimal("0.00"))
        more_rows = max(table.groups - first - len(rows), 0)
    else:
        # Every group in one query; the totals are their sums, so the table's
        # "All" row always agrees with its rows, and nothing is counted twice.
        rows = [SourceRow(**{**row, "amount": row["amount"] or Decimal("0.00")}) for row in grouped]
        total = SourceRow(
            "",
            "",
            "",
            sum(row.leads for row in rows),
            sum(row.first_contacts for row in rows),
            sum((row.amount for row in rows), Decimal("0.00")),
        )
        rows.sort(key=lambda row: (-row.leads, row.source, row.medium, row.campaign))
        more_rows = max(len(rows) - first - size, 0)
        rows = rows[first : first + size]
    day_totals = [(day, sum(per_day[day].values())) for day in days]
    chart = draw(days, per_day, order)
    return Report(start, end, days, per_day, day_totals, channels, rows, more_rows, total, chart)


# --- End to end: sessions → leads → deals, with costs ---------------------------

NONE = "—"


@dataclass
class FunnelTable:
    """The end-to-end table as text cells: the page and the CSV show the same."""

    grouping: str
    groupings: list[tuple[str, str]]
    currency: str
    header: list[str]
    rows: list[list[str]]
    total: list[str]
    more_rows: int
    key_columns: int
    series: list = field(default_factory=list)
    page: int = 1


def _num(value) -> str:
    return NONE if value is None else str(value)


def _percent(value) -> str:
    return NONE if value is None else f"{value:.1f}%"


def funnel_cells(row: Row) -> list[str]:
    return [
        _num(row.sessions),
        str(row.leads),
        str(row.first_contacts),
        _percent(row.conversion),
        str(row.deals),
        str(row.amount),
        _num(row.cost),
        _num(row.cost_per_lead),
        _num(row.cost_per_deal),
        _percent(row.roi),
        duration(row.extra.get("response_median_seconds")),
        _percent(row.extra.get("answered_within_1h")),
        _percent(row.extra.get("answered_within_1d")),
        _num(row.extra.get("unanswered")),
    ]


def duration(seconds: int | None) -> str:
    """A response time as a person reads it: 45 min, 3 h 20 min, 2 d 4 h."""
    if seconds is None:
        return NONE
    minutes = seconds // 60
    if minutes < 60:
        return _("%(m)s min") % {"m": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return _("%(h)s h %(m)s min") % {"h": hours, "m": minutes}
    days, hours = divmod(hours, 24)
    return _("%(d)s d %(h)s h") % {"d": days, "h": hours}


def funnel_header(fields: tuple[str, ...], currency: str) -> list[str]:
    return [str(FIELD_LABELS[name]) for name in fields] + [
        str(_("Sessions")),
        str(_("Leads")),
        str(_("First contact")),
        str(_("Conversion")),
        str(_("Deals")),
        str(_("Deal amount")),
        str(_("Cost, %(currency)s") % {"currency": currency}),
        str(_("Cost per lead")),
        str(_("Cost per deal")),
        str(_("ROI")),
        str(_("Median response")),
        str(_("Answered within 1 h")),
        str(_("Answered within 1 day")),
        str(_("No reply yet")),
    ]


def build_funnel(
    project,
    leads: QuerySet[Lead] | None,
    start: date,
    end: date,
    grouping: str,
    site_id: int | None = None,
    page: int | None = 1,
) -> FunnelTable:
    """The end-to-end table of `leads` (the project's, filtered to the period;
    with the list's site filter, that site's sessions only; None: every lead
    of the period, from the report days). The `page`th page of its rows, the
    largest first; None: the first TABLE_ROWS (the CSV)."""
    if grouping not in GROUPINGS:
        grouping = "channel"
    first, size = (0, TABLE_ROWS) if page is None else page_rows(page)
    report = end_to_end(
        project=project,
        leads=leads,
        date_from=start,
        date_to=end,
        grouping=grouping,
        site_id=site_id,
        offset=first,
        limit=size,
    )
    more_rows, shown = report.more_rows, report.rows
    currency = project_currency(project)
    none = str(_("(none)"))
    rows = [[label or none for label in row.labels] + funnel_cells(row) for row in shown]
    total = [str(_("All"))] + [""] * (len(report.fields) - 1) + funnel_cells(report.total)
    return FunnelTable(
        grouping=grouping,
        groupings=[(value, str(label)) for value, label in GROUPING_LABELS.items()],
        currency=currency,
        header=funnel_header(report.fields, currency),
        rows=rows,
        total=total,
        more_rows=more_rows,
        key_columns=len(report.fields),
        page=page or 1,
    )


# --- Conversion and cost per lead by source over time ------------------------------

SOURCE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


@dataclass
class Line:
    label: str
    colour: str
    points: str  # SVG polyline points of the days that have a value
    dots: list[Label]  # each day's value, for its <title>


def draw_lines(days: list[date], series: list[tuple[str, list]], unit: str) -> tuple[Chart, list[Line]]:
    """One line per source; a day without a value breaks nothing, it is skipped."""
    chart = Chart(width=PLOT_LEFT + PLOT_WIDTH + 10, height=PLOT_TOP + PLOT_HEIGHT + AXIS_HEIGHT)
    values = [float(v) for _label, line in series for v in line if v is not None]
    top = nice_ceiling(max(values, default=0) or 1)
    slot = PLOT_WIDTH / max(len(days), 1)
    lines = []
    for i, (label, line) in enumerate(series):
        points, dots = [], []
        for n, value in enumerate(line):
            if value is None:
                continue
            x = round(PLOT_LEFT + (n + 0.5) * slot, 2)
            y = round(PLOT_TOP + PLOT_HEIGHT - PLOT_HEIGHT * float(value) / top, 2)
            points.append(f"{x},{y}")
            dots.append(Label(x, y, f"{days[n]:%Y-%m-%d} · {label}: {value}{unit}"))
        lines.append(Line(label, SOURCE_COLOURS[i % len(SOURCE_COLOURS)], " ".join(points), dots))
    every = max(1, round(len(days) / 10))
    for n, day in enumerate(days):
        if n % every == 0:
            chart.x_labels.append(
                Label(round(PLOT_LEFT + (n + 0.5) * slot, 2), PLOT_TOP + PLOT_HEIGHT + 16, date_format(day, "j M"))
            )
    for value in (0, top // 2, top) if top > 1 else (0, top):
        chart.y_labels.append(
            Label(PLOT_LEFT - 6, round(PLOT_TOP + PLOT_HEIGHT - PLOT_HEIGHT * value / top, 2), f"{value}{unit}")
        )
    return chart, lines


def build_source_charts(project, leads: QuerySet[Lead] | None, start: date, end: date, currency: str) -> dict:
    """The two charts, each (element id, title, (chart, lines)); `empty` when no source has leads or costs."""
    days, series = daily_by_source(project, leads, start, end)
    none = str(_("(none)"))
    conversion = draw_lines(days, [(s.source or none, s.conversion) for s in series], "%")
    per_lead = draw_lines(days, [(s.source or none, s.cost_per_lead) for s in series], "")
    return {
        "empty": not series,
        "charts": [
            ("conversion-chart", _("Conversion by source (leads per 100 sessions)"), conversion),
            ("cost-per-lead-chart", _("Cost per lead by source, %(currency)s") % {"currency": currency}, per_lead),
        ],
    }
