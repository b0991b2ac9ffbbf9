"""The end-to-end report: for a period (days in the project's time zone) and
a grouping, the sessions of the project's sites, the leads, first contacts,
deals and their amount, and what was paid, with conversion (leads /
sessions), cost per lead, cost per deal and ROI ((deal amounts - cost) /
cost).

Sessions, leads and costs meet on lowercase values of the grouping's fields.
Costs are kept per day and source / medium / campaign, so they are split by
channel (the channel tracker gives a visit with those UTM tags), source,
medium and campaign only; by keyword, site, block or mailbox their total
is given without a split. Per mailbox (the one the lead's first letter
reached, whose Sent folder holds the replies: the replying address) and per
every other group: the manager response time (`response`). A group that has costs and no traffic is a row of its own:
costs are never dropped. Deals are leads marked won; the deal amount is the
sum over the group's leads.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _

from attribution.models import Lead
from mailbox_sync.models import Mailbox
from substitution.models import Block
from tracker.channels import classify
from tracker.models import Channel, Session, Site

from . import ranked, rollups
from .models import Cost
from .response import Response, first_letter_mailbox, response_times_grouped

# grouping → its fields, in the order shown
GROUPINGS = {
    "channel": ("channel",),
    "source": ("source", "medium"),
    "medium": ("medium",),
    "campaign": ("source", "medium", "campaign"),
    "keyword": ("keyword",),
    "site": ("site",),
    "block": ("block",),
    "mailbox": ("mailbox",),
}
GROUPING_LABELS = {
    "channel": _("Channel"),
    "source": _("Source / medium"),
    "medium": _("Medium"),
    "campaign": _("Source / medium / campaign"),
    "keyword": _("Keyword"),
    "site": _("Site"),
    "block": _("Block"),
    "mailbox": _("Mailbox (replying address)"),
}
FIELD_LABELS = {
    "channel": _("Channel"),
    "source": _("Source"),
    "medium": _("Medium"),
    "campaign": _("Campaign"),
    "keyword": _("Keyword"),
    "site": _("Site"),
    "block": _("Block"),
    "mailbox": _("Mailbox"),
}
LEAD_FIELDS = {
    "channel": F("channel"),
    "source": Lower("source"),
    "medium": Lower("medium"),
    "campaign": Lower("campaign"),
    "keyword": Lower("keyword"),
    "site": F("site_id"),
    "block": F("lease__block_id"),
    "mailbox": first_letter_mailbox(),
}
SESSION_FIELDS = {
    "channel": F("channel"),
    "source": Lower("source"),
    "medium": Lower("utm_medium"),
    "campaign": Lower("utm_campaign"),
    "keyword": Lower("keyword"),
    "site": F("visitor__site_id"),
}
# The same groups on report days (`rollups`): ref is the site, block or mailbox.
DAY_FIELDS = {
    "channel": F("channel"),
    "source": Lower("source"),
    "medium": Lower("medium"),
    "campaign": Lower("campaign"),
    "keyword": Lower("keyword"),
    "site": F("ref"),
    "block": F("ref"),
    "mailbox": F("ref"),
}
REF_FIELDS = {"site", "block", "mailbox"}
COST_FIELDS = {"source": Lower("source"), "medium": Lower("medium"), "campaign": Lower("campaign")}
COST_GROUPINGS = {"channel", "source", "medium", "campaign"}
SESSION_GROUPINGS = {"channel", "source", "medium", "campaign", "keyword", "site"}
# Groupings whose groups are their own labels, so the database can rank them
# (`ranked`); the channel's costs are split in Python, and sites, blocks and
# mailboxes are few and ranked by their names.
RANKED_GROUPINGS = {"source", "medium", "campaign", "keyword"}
ZERO = Decimal("0.00")


@dataclass
class Row:
    key: tuple
    labels: tuple = ()
    sessions: int | None = 0
    leads: int = 0
    first_contacts: int = 0
    deals: int = 0
    amount: Decimal = ZERO
    cost: Decimal | None = ZERO
    extra: dict = field(default_factory=dict)  # response times, added by the caller

    @property
    def conversion(self) -> float | None:
        """Leads per 100 sessions."""
        return round(100 * self.leads / self.sessions, 2) if self.sessions else None

    @property
    def cost_per_lead(self) -> Decimal | None:
        return _money(self.cost / self.leads) if self.cost is not None and self.leads else None

    @property
    def cost_per_deal(self) -> Decimal | None:
        return _money(self.cost / self.deals) if self.cost is not None and self.deals else None

    @property
    def roi(self) -> float | None:
        """(deal amounts - cost) / cost, in per cent."""
        return round(float(100 * (self.amount - self.cost) / self.cost), 2) if self.cost else None


@dataclass
class EndToEnd:
    grouping: str
    fields: tuple[str, ...]
    date_from: date
    date_to: date
    rows: list[Row]
    total: Row
    more_rows: int = 0
    with_sessions: bool = True
    with_costs: bool = True


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def period_bounds(time_zone: str, date_from: date, date_to: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(time_zone)
    return datetime.combine(date_from, time.min, tzinfo=tz), datetime.combine(
        date_to + timedelta(days=1), time.min, tzinfo=tz
    )


def cost_channel(source: str, medium: str) -> str:
    """The channel tracker gives a visit tagged with this source and medium."""
    query = urlencode({"utm_source": source, "utm_medium": medium})
    return classify(f"https://costs.invalid/?{query}", "").channel


def _grouped(queryset: QuerySet, fields: tuple[str, ...], mapping: dict, **measures) -> dict[tuple, dict]:
    names = {f"g_{name}": mapping[name] for name in fields}
    rows = queryset.annotate(**names).values(*names).annotate(**measures).order_by()
    return {tuple(row[f"g_{name}"] for name in fields): row for row in rows}


def end_to_end(
    *,
    project,
    leads: QuerySet[Lead] | None,
    date_from: date,
    date_to: date,
    grouping: str = "channel",
    limit: int | None = None,
    offset: int = 0,
    site_id: int | None = None,
) -> EndToEnd:
    """The report for `leads` (already filtered to the project and period);
    with `site_id`, the sessions of that site only (costs have no site).
    `leads` None: every lead of the project in the period, counted from the
    report days (`rollups`) when they are ready, so the report reads days,
    not every lead and session of the period. Its rows are the `limit`
    largest from `offset` (None: all); the total is of every row."""
    fields = GROUPINGS[grouping]
    start, end = period_bounds(project.time_zone, date_from, date_to)
    from_days = leads is None and site_id is None and rollups.ready(project)
    if leads is None:
        leads = Lead.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    if from_days and grouping in RANKED_GROUPINGS and ranked.available():
        return _ranked_from_days(project, leads, date_from, date_to, grouping, offset, limit)
    found: dict[tuple, Row] = {}

    def row(key) -> Row:
        if key not in found:
            found[key] = Row(key=key)
        return found[key]

    with_sessions = grouping in SESSION_GROUPINGS
    if from_days:
        lead_groups, session_groups, session_total = _from_days(project, date_from, date_to, grouping)
    else:
        lead_groups, session_groups, session_total = _from_rows(project, leads, start, end, grouping, site_id)
    for key, values in lead_groups.items():
        r = row(key)
        r.leads, r.first_contacts, r.deals = values["n"], values["first"], values["won"]
        r.amount = values["amount"] or ZERO
    for key, n in session_groups.items():
        row(key).sessions = n
    # From report days: whole weeks from the costs' weeks, the days around them from the costs.
    cost_sets = (
        rollups.cost_period(project, date_from, date_to)
        if from_days
        else [Cost.objects.filter(project=project, day__gte=date_from, day__lte=date_to)]
    )
    with_costs = grouping in COST_GROUPINGS
    cost_total = ZERO
    for costs in cost_sets:
        if grouping == "channel":
            for (source, medium), values in _grouped(costs, ("source", "medium"), COST_FIELDS, s=Sum("amount")).items():
                r = row((cost_channel(source, medium),))
                r.cost += values["s"]
                cost_total += values["s"]
        elif with_costs:
            for key, values in _grouped(costs, fields, COST_FIELDS, s=Sum("amount")).items():
                row(key).cost += values["s"]
                cost_total += values["s"]
        else:
            cost_total += costs.aggregate(s=Sum("amount"))["s"] or ZERO
    rows = list(found.values())
    for r in rows:
        if not with_sessions:
            r.sessions = None
        if not with_costs:
            r.cost = None
    # From report days only the answered leads are read (with their replies),
    # the others are counted: the median needs every reply time, the rest is a count.
    counts = {r.key: r.leads for r in rows} if from_days else None
    responses = response_times_grouped(leads, {name: LEAD_FIELDS[name] for name in fields}, counts)
    for r in rows:
        r.extra = responses.get(r.key, Response()).as_dict()
    _label(rows, grouping, fields, project)
    total_leads = sum(r.leads for r in rows)
    all_counts = {(project.pk,): total_leads} if from_days else None
    total = Row(
        key=(),
        sessions=session_total,
        leads=total_leads,
        first_contacts=sum(r.first_contacts for r in rows),
        deals=sum(r.deals for r in rows),
        amount=sum((r.amount for r in rows), ZERO),
        cost=cost_total,
        extra=response_times_grouped(leads, {"all": F("project_id")}, all_counts)
        .get((project.pk,), Response())
        .as_dict(),
    )
    rows.sort(key=lambda r: (-r.leads, -(r.sessions or 0), -(r.cost or 0), r.labels))
    shown = rows[offset:] if limit is None else rows[offset : offset + limit]
    more = max(len(rows) - offset - len(shown), 0)
    return EndToEnd(grouping, fields, date_from, date_to, shown, total, more, with_sessions, with_costs)


def _ranked_from_days(project, leads, date_from, date_to, grouping, offset, limit) -> EndToEnd:
    """The report from the report days with its groups ranked and paged by
    the database (`ranked`): only the page's groups come to Python (and have
    their response times worked out); the total is every group's."""
    fields = GROUPINGS[grouping]
    with_costs = grouping in COST_GROUPINGS
    # Grouped by the values as stored; the database merges them in lower case after.
    names = {f"g_{name}": F(name) for name in fields}
    keys = list(names)

    def grouped(queryset, **measures):
        return queryset.annotate(**names).values(*names).annotate(**measures).order_by()

    lead_measures = {"n": Sum("leads"), "first": Sum("first_contacts"), "won": Sum("deals"), "amount": Sum("amount")}
    parts = [
        ranked.Part(
            grouped(rollups.report_days(project, date_from, date_to, grouping), **lead_measures),
            keys,
            {"leads": "n", "first_contacts": "first", "deals": "won", "amount": "amount"},
        ),
        ranked.Part(
            grouped(rollups.session_days(project, date_from, date_to, grouping), n=Sum("sessions")),
            keys,
            {"sessions": "n"},
        ),
    ]
    # Whole weeks from the costs' weeks, the days around them from the costs.
    cost_rows = rollups.cost_period(project, date_from, date_to)
    if with_costs:
        for rows in cost_rows:
            by_group = grouped(rows, s=Sum("amount"), n=Count("id"))
            parts.append(ranked.Part(by_group, keys, {"cost": "s", "cost_rows": "n"}))
    measures = {"leads": "count", "first_contacts": "count", "deals": "count", "amount": "money", "sessions": "count"}
    measures |= {"cost": "money", "cost_rows": "count"}
    # A group is one when it has leads, or sessions, or a cost row (as the rows' report groups them).
    present = "sum(leads) <> 0 OR sum(sessions) <> 0 OR sum(cost_rows) > 0"
    page = ranked.ranked_page(
        parts, measures, ["leads", "sessions", "cost"], len(fields), offset, limit, lowercase=True, present=present
    )
    rows = [
        Row(
            key=values["key"],
            sessions=values["sessions"],
            leads=values["leads"],
            first_contacts=values["first_contacts"],
            deals=values["deals"],
            amount=values["amount"] or ZERO,
            cost=(values["cost"] or ZERO) if with_costs else None,
        )
        for values in page.rows
    ]
    responses = response_times_grouped(
        leads, {name: LEAD_FIELDS[name] for name in fields}, {r.key: r.leads for r in rows}
    )
    for r in rows:
        r.extra = responses.get(r.key, Response()).as_dict()
    _label(rows, grouping, fields, project)
    totals = page.totals
    if with_costs:
        cost_total = totals["cost"] or ZERO
    else:
        cost_total = sum((rows.aggregate(s=Sum("amount"))["s"] or ZERO for rows in cost_rows), ZERO)
    total = Row(
        key=(),
        sessions=totals["sessions"] or 0,
        leads=totals["leads"] or 0,
        first_contacts=totals["first_contacts"] or 0,
        deals=totals["deals"] or 0,
        amount=totals["amount"] or ZERO,
        cost=cost_total,
        extra=response_times_grouped(leads, {"all": F("project_id")}, {(project.pk,): totals["leads"] or 0})
        .get((project.pk,), Response())
        .as_dict(),
    )
    more = max(page.groups - offset - len(rows), 0)
    return EndToEnd(grouping, fields, date_from, date_to, rows, total, more, True, with_costs)


def _from_rows(project, leads, start, end, grouping, site_id) -> tuple[dict, dict, int]:
    """Lead figures and sessions per group, and all sessions, from the raw rows."""
    fields = GROUPINGS[grouping]
    lead_groups = _grouped(
        leads,
        fields,
        LEAD_FIELDS,
        n=Count("id"),
        first=Count("id", filter=Q(first_contact=True)),
        won=Count("id", filter=Q(status=Lead.Status.WON)),
        amount=Sum("deal_amount"),
    )
    sessions = Session.objects.filter(visitor__site__project=project, started_at__gte=start, started_at__lt=end)
    if site_id is not None:
        sessions = sessions.filter(visitor__site_id=site_id)
    if grouping not in SESSION_GROUPINGS:
        return lead_groups, {}, sessions.count()
    session_groups = {
        key: values["n"] for key, values in _grouped(sessions, fields, SESSION_FIELDS, n=Count("id")).items()
    }
    return lead_groups, session_groups, sum(session_groups.values())


def _from_days(project, date_from: date, date_to: date, grouping: str) -> tuple[dict, dict, int]:
    """The same from the report days: one row per day and group, not per lead or session."""
    fields = GROUPINGS[grouping]

    def key_of(key: tuple) -> tuple:
        return tuple(value or None if name in REF_FIELDS else value for name, value in zip(fields, key, strict=True))

    days = rollups.report_days(project, date_from, date_to, grouping)
    measures = {"n": Sum("leads"), "first": Sum("first_contacts"), "won": Sum("deals"), "amount": Sum("amount")}
    lead_groups = {key_of(key): values for key, values in _grouped(days, fields, DAY_FIELDS, **measures).items()}
    lead_groups = {key: values for key, values in lead_groups.items() if values["n"]}
    session_groups = {}
    if grouping in SESSION_GROUPINGS:
        days = rollups.session_days(project, date_from, date_to, grouping)
        for key, values in _grouped(days, fields, DAY_FIELDS, n=Sum("sessions")).items():
            if values["n"]:
                session_groups[key_of(key)] = values["n"]
        session_total = sum(session_groups.values())
    else:
        channels = rollups.session_days(project, date_from, date_to, "channel")
        session_total = channels.aggregate(n=Sum("sessions"))["n"] or 0
    return lead_groups, session_groups, session_total


def _label(rows: list[Row], grouping: str, fields: tuple[str, ...], project) -> None:
    names = {}
    if grouping == "site":
        names = dict(Site.objects.filter(project=project).values_list("id", "name"))
    elif grouping == "block":
        names = dict(Block.objects.filter(project=project).values_list("id", "name"))
    elif grouping == "mailbox":
        names = {
            pk: f"{name} <{address}>"
            for pk, name, address in Mailbox.objects.filter(project=project).values_list("id", "name", "username")
        }
    channels = dict(Channel.choices)
    for r in rows:
        labels = []
        for name, value in zip(fields, r.key, strict=True):
            if name == "channel":
                labels.append(str(channels.get(value, value)))
            elif name in ("site", "block", "mailbox"):
                labels.append(names.get(value, "") if value is not None else "")
            else:
                labels.append(value or "")
        r.labels = tuple(labels)
