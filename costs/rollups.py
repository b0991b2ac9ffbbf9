"""Report days: the end-to-end report's counts and sums per project, day (in
the project's time zone), grouping and group (`ReportDay` for leads,
`SessionDay` for sessions), so that a report of a period reads its days
instead of every lead and session in it.

Kept exact, each from its own rows:
- leads (count, first contacts, deals, deal amount): a day's lead figures are
  counted again from that day's leads whenever one of them is created,
  changed or deleted (`recount_lead_days`, called by `costs.listeners`),
  under a per-project lock so two recounts never interleave;
- sessions: on PostgreSQL by triggers on the session table, since collect
  inserts a new visitor's session with plain SQL in the same statement as
  its leases. The triggers only append to a queue (`SessionDelta`, migration
  0004), so that new visitors never wait on each other's sessions-day rows;
  `fold_session_deltas` moves the queue into the days every minute and
  before a report reads them, so what a report reads is exact. Elsewhere
  (SQLite) `add_sessions` counts them from the session's save and delete
  signals.
`rebuild` counts a range again from the raw rows (management command
`rebuild_report_days`, the Celery task of the same name, the migration that
made the table, the benchmark). A report reads the days only while
`RollupState` says they were counted in the project's current time zone.
"""

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Concat, TruncDate, TruncWeek
from django.utils import timezone

from attribution.models import Lead
from lib.lookups import AnyOf
from projects.models import Project
from tracker.models import Session, Site

from . import ranked
from .models import Cost, CostWeek, ReportDay, RollupState, SessionDay, SessionDelta
from .response import first_letter_mailbox

# grouping → the report day's key columns and, per source of rows, what fills them
LEAD_KEYS = {
    "channel": {"channel": F("channel")},
    "source": {"source": F("source"), "medium": F("medium")},
    "medium": {"medium": F("medium")},
    "campaign": {"source": F("source"), "medium": F("medium"), "campaign": F("campaign")},
    "keyword": {"keyword": F("keyword")},
    "site": {"ref": F("site_id")},
    "block": {"ref": F("lease__block_id")},
    "mailbox": {"ref": first_letter_mailbox()},
}
SESSION_KEYS = {
    "channel": {"channel": F("channel")},
    "source": {"source": F("source"), "medium": F("utm_medium")},
    "medium": {"medium": F("utm_medium")},
    "campaign": {"source": F("source"), "medium": F("utm_medium"), "campaign": F("utm_campaign")},
    "keyword": {"keyword": F("keyword")},
    "site": {"ref": F("visitor__site_id")},
}
LEAD_MEASURES = {
    "leads": Count("id"),
    "first_contacts": Count("id", filter=Q(first_contact=True)),
    "deals": Count("id", filter=Q(status=Lead.Status.WON)),
    "amount": Sum("deal_amount"),
}
LEAD_COLUMNS = list(LEAD_MEASURES)
# Lead fields whose change moves a lead between groups or changes a figure.
COUNTED_FIELDS = frozenset(
    {"project", "created_at", "first_contact", "status", "deal_amount", "site", "lease"}
    | {"channel", "source", "medium", "campaign", "keyword"}
)
WEEK = "/week"  # a grouping's week rows: "channel/week", day: the week's Monday (the sums of its 7 days)
KEY_COLUMNS = ("channel", "source", "medium", "campaign", "keyword", "ref")
LOCK_CLASS = 0x0C05  # advisory lock namespace: report days of one project


def day_bounds(time_zone: str, day: date) -> tuple[datetime, datetime]:
    tz = ZoneInfo(time_zone)
    return datetime.combine(day, time.min, tzinfo=tz), datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)


def local_day(at: datetime, time_zone: str) -> date:
    return timezone.localtime(at, ZoneInfo(time_zone)).date()


def _lock(project_id: int) -> None:
    """Recounts and rebuilds of one project's days one at a time (PostgreSQL;
    SQLite writes one at a time anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_CLASS, project_id])


def _grouped_query(queryset: QuerySet, keys: dict, measures: dict, day=None) -> QuerySet:
    names = {f"k_{name}": expression for name, expression in keys.items()}
    if day is not None:
        names["k_day"] = day
    return queryset.annotate(**names).values(*names).annotate(**measures).order_by()


KEY_DEFAULTS = {"channel": "''", "source": "''", "medium": "''", "campaign": "''", "keyword": "''", "ref": "0"}


def _select(grouping, grouped: QuerySet, keys: dict, measures: list) -> tuple[str, list]:
    """A grouped query as the rows of a report days table; `grouping` None: its own `k_grouping`."""
    select, params = grouped.query.sql_with_params()
    values = ["%s", "%s" if grouping is not None else "q.k_grouping", "q.k_day"]
    values += [
        f"coalesce(q.k_{name}, {default})" if name in keys else default for name, default in KEY_DEFAULTS.items()
    ]
    values += [f"coalesce(q.{name}, 0)" for name in measures]
    return f"SELECT {', '.join(values)} FROM ({select}) q", [*([grouping] if grouping is not None else []), *params]


def _insert(model, project_id: int, selects: list[tuple[str, list]], measures: list) -> int:
    """One INSERT ... SELECT of the selects' rows (they never leave the
    database: a rebuild of millions of rows takes seconds, not minutes)."""
    columns = ["project_id", "grouping", "day", *KEY_DEFAULTS, *measures]
    # In grouping and day order, so that a period's rows sit together on disk.
    union = " UNION ALL ".join(s for s, _p in selects)
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) {union} ORDER BY 2, 3"
    params = [value for _sql, part in selects for value in [project_id, *part]]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _insert_grouped(model, project_id: int, grouping, grouped: QuerySet, keys: dict, measures: list) -> int:
    return _insert(model, project_id, [_select(grouping, grouped, keys, measures)], measures)


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _count_weeks(model, project_id: int, measures: list[str], first: date | None, last: date | None) -> int:
    """The week rows of the weeks from the one of `first` to the one of
    `last` (None: every week), summed from their day rows."""
    weeks = model.objects.filter(project_id=project_id, grouping__endswith=WEEK)
    days = model.objects.filter(project_id=project_id).exclude(grouping__endswith=WEEK)
    if first is not None:
        weeks, days = weeks.filter(day__gte=monday(first)), days.filter(day__gte=monday(first))
    if last is not None:
        weeks = weeks.filter(day__lte=monday(last))
        days = days.filter(day__lt=monday(last) + timedelta(days=7))
    weeks.delete()
    keys = {name: F(name) for name in KEY_COLUMNS} | {"grouping": Concat("grouping", Value(WEEK))}
    grouped = _grouped_query(days, keys, {name: Sum(name) for name in measures}, TruncWeek("day"))
    return _insert_grouped(model, project_id, None, grouped, keys, measures)


def recount_lead_days(project_id: int, days, time_zone: str | None = None) -> None:
    """Count the lead figures of these days of the project (and of their
    weeks) again from its leads: a constant handful of statements however
    many leads and days, as it runs inside the writer's transaction."""
    if time_zone is None:
        time_zone = Project.objects.filter(pk=project_id).values_list("time_zone", flat=True).first()
        if time_zone is None:
            return
    tz = ZoneInfo(time_zone)
    days = sorted(set(days))
    mondays = sorted({monday(day) for day in days})
    in_days, in_weeks = Q(), Q()
    for day in days:
        start, end = day_bounds(time_zone, day)
        in_days |= Q(created_at__gte=start, created_at__lt=end)
    for week in mondays:
        in_weeks |= Q(day__gte=week, day__lt=week + timedelta(days=7))
    with transaction.atomic(savepoint=False):
        _lock(project_id)
        ReportDay.objects.filter(
            Q(day__in=days) & ~Q(grouping__endswith=WEEK) | Q(day__in=mondays, grouping__endswith=WEEK),
            project_id=project_id,
        ).delete()
        leads = Lead.objects.filter(in_days, project_id=project_id)
        day = TruncDate("created_at", tzinfo=tz)
        selects = [
            _select(grouping, _grouped_query(leads, keys, LEAD_MEASURES, day), keys, LEAD_COLUMNS)
            for grouping, keys in LEAD_KEYS.items()
        ]
        _insert(ReportDay, project_id, selects, LEAD_COLUMNS)
        day_rows = ReportDay.objects.filter(in_weeks, project_id=project_id).exclude(grouping__endswith=WEEK)
        keys = {name: F(name) for name in KEY_COLUMNS} | {"grouping": Concat("grouping", Value(WEEK))}
        grouped = _grouped_query(day_rows, keys, {name: Sum(name) for name in LEAD_COLUMNS}, TruncWeek("day"))
        _insert_grouped(ReportDay, project_id, None, grouped, keys, LEAD_COLUMNS)


def recount_leads(lead_ids) -> None:
    """After leads were created or changed (by id): recount their days."""
    wanted: dict[tuple[int, str], set[date]] = {}
    rows = Lead.objects.filter(AnyOf("id", lead_ids)).values_list("project_id", "created_at", "project__time_zone")
    for project_id, created_at, time_zone in rows:
        wanted.setdefault((project_id, time_zone), set()).add(local_day(created_at, time_zone))
    for (project_id, time_zone), days in wanted.items():
        recount_lead_days(project_id, days, time_zone)


ADD_LEADS = """
WITH l AS MATERIALIZED ({leads}),
d (project_id, grouping, day, {keys}, {measures}) AS (
    SELECT %s, k.grouping, l.k_day, {key_values}, {sums}
    FROM l CROSS JOIN LATERAL (VALUES {groupings}) AS k (grouping, {keys})
    GROUP BY k.grouping, l.k_day, {key_values}
)
INSERT INTO {table} AS r (project_id, grouping, day, {keys}, {measures})
SELECT * FROM d
UNION ALL
SELECT project_id, grouping || '{week}', date_trunc('week', day::timestamp)::date, {keys}, {sums}
FROM d GROUP BY project_id, grouping, 3, {keys}
ON CONFLICT (project_id, grouping, day, {keys})
DO UPDATE SET {added}
"""


def _new_leads_statement(leads: QuerySet, project_id: int, time_zone: str) -> tuple[str, list]:
    """ADD_LEADS for the leads: read once and summed (by LEAD_MEASURES) per
    day and combination of their keys in every grouping (by LEAD_KEYS), a
    handful of rows (`l`), each fanned out to one row per grouping and
    summed again per day and group."""
    columns = {
        f"k_{grouping}_{name}": expression for grouping, keys in LEAD_KEYS.items() for name, expression in keys.items()
    }
    summed = (
        leads.annotate(k_day=TruncDate("created_at", tzinfo=ZoneInfo(time_zone)), **columns)
        .values("k_day", *columns)
        .annotate(**LEAD_MEASURES)
        .order_by()
    )
    select, params = summed.query.sql_with_params()
    groupings = []
    for grouping, keys in LEAD_KEYS.items():
        values = [
            f"coalesce(l.k_{grouping}_{name}, {default})" if name in keys else default
            for name, default in KEY_DEFAULTS.items()
        ]
        groupings.append(f"('{grouping}', {', '.join(values)})")
    sql = ADD_LEADS.format(
        leads=select,
        groupings=", ".join(groupings),
        table=ReportDay._meta.db_table,
        keys=", ".join(KEY_DEFAULTS),
        key_values=", ".join(f"k.{name}" for name in KEY_DEFAULTS),
        measures=", ".join(LEAD_COLUMNS),
        week=WEEK,
        sums=", ".join(f"coalesce(sum({name}), 0)" for name in LEAD_COLUMNS),
        added=", ".join(f"{name} = r.{name} + excluded.{name}" for name in LEAD_COLUMNS),
    )
    return sql, [*params, project_id]


def count_new_leads(lead_ids) -> None:
    """Leads just created (by id, not counted yet): added to the figures of
    their days and weeks, in one statement per project whatever the project
    has counted before, so attribution's transaction does not count its
    days' leads again for every batch; the statement reads each lead once
    for all groupings. Under the project's lock, as a recount: a recount or
    rebuild committed before sees none of these leads, one after sees them
    all. Where there is no upsert of this shape (SQLite), the days are
    counted again."""
    lead_ids = list(lead_ids)
    if not lead_ids:
        return
    if connection.vendor != "postgresql":
        recount_leads(lead_ids)
        return
    # New leads' ids are the latest: the range lets the index find them.
    new = Lead.objects.filter(AnyOf("id", lead_ids), id__gte=min(lead_ids), id__lte=max(lead_ids))
    for project_id, time_zone in new.values_list("project_id", "project__time_zone").distinct().order_by():
        sql, params = _new_leads_statement(new.filter(project_id=project_id), project_id, time_zone)
        with transaction.atomic(savepoint=False):
            _lock(project_id)
            with connection.cursor() as cursor:
                cursor.execute(sql, params)


def rebuild(project: Project, date_from: date | None = None, date_to: date | None = None) -> int:
    """Count the project's days from `date_from` to `date_to` (both
    included; open ends: all) again from its leads and sessions. A rebuild of
    every day also records the time zone they were counted in. Returns the
    number of report days written."""
    time_zone = project.time_zone
    tz = ZoneInfo(time_zone)
    days = ReportDay.objects.filter(project=project).exclude(grouping__endswith=WEEK)
    session_days = SessionDay.objects.filter(project=project).exclude(grouping__endswith=WEEK)
    leads = Lead.objects.filter(project=project)
    sessions = Session.objects.filter(visitor__site__project=project)
    deltas = SessionDelta.objects.filter(project_id=project.pk)
    if date_from is not None:
        start = day_bounds(time_zone, date_from)[0]
        deltas = deltas.filter(day__gte=date_from)
        days, session_days = days.filter(day__gte=date_from), session_days.filter(day__gte=date_from)
        leads, sessions = leads.filter(created_at__gte=start), sessions.filter(started_at__gte=start)
    if date_to is not None:
        end = day_bounds(time_zone, date_to)[1]
        deltas = deltas.filter(day__lte=date_to)
        days, session_days = days.filter(day__lte=date_to), session_days.filter(day__lte=date_to)
        leads, sessions = leads.filter(created_at__lt=end), sessions.filter(started_at__lt=end)
    written = 0
    with transaction.atomic():
        _lock(project.pk)
        days.delete()
        session_days.delete()
        # The queue's committed sessions are among the rows counted below;
        # one still uncommitted is neither, and is folded in after.
        deltas.delete()
        for grouping, keys in LEAD_KEYS.items():
            grouped = _grouped_query(leads, keys, LEAD_MEASURES, TruncDate("created_at", tzinfo=tz))
            written += _insert_grouped(ReportDay, project.pk, grouping, grouped, keys, LEAD_COLUMNS)
        for grouping, keys in SESSION_KEYS.items():
            grouped = _grouped_query(sessions, keys, {"sessions": Count("id")}, TruncDate("started_at", tzinfo=tz))
            written += _insert_grouped(SessionDay, project.pk, grouping, grouped, keys, ["sessions"])
        written += _count_weeks(ReportDay, project.pk, LEAD_COLUMNS, date_from, date_to)
        written += _count_weeks(SessionDay, project.pk, ["sessions"], date_from, date_to)
        if date_from is None and date_to is None:
            RollupState.objects.update_or_create(project=project, defaults={"time_zone": time_zone})
    return written


def session_keys(session: Session, site_id: int) -> dict[str, dict]:
    """The report days' keys of one session, per grouping (as SESSION_KEYS)."""
    return {
        "channel": {"channel": session.channel},
        "source": {"source": session.source, "medium": session.utm_medium},
        "medium": {"medium": session.utm_medium},
        "campaign": {"source": session.source, "medium": session.utm_medium, "campaign": session.utm_campaign},
        "keyword": {"keyword": session.keyword},
        "site": {"ref": site_id},
    }


ADD_SESSIONS = """
INSERT INTO {table} AS r (project_id, grouping, day, channel, source, medium, campaign, keyword, ref, sessions)
VALUES {values}
ON CONFLICT (project_id, grouping, day, channel, source, medium, campaign, keyword, ref)
DO UPDATE SET sessions = r.sessions + excluded.sessions
"""


REMOVE_SESSION = """
UPDATE {table} SET sessions = sessions - 1
WHERE project_id = %s AND grouping = %s AND day = %s AND channel = %s AND source = %s AND medium = %s
  AND campaign = %s AND keyword = %s AND ref = %s
"""


def add_sessions(session: Session, sign: int) -> None:
    """One session more (sign 1) or fewer (-1) in its report days; where the
    database has no triggers for it (PostgreSQL counts them in triggers). A
    session fewer only changes rows that exist (its project may be going)."""
    site_id = session.visitor.site_id
    row = Site.objects.filter(pk=site_id).values_list("project_id", "project__time_zone").first()
    if row is None:
        return
    project_id, time_zone = row
    day = local_day(session.started_at, time_zone)
    rows = []
    for grouping, key in session_keys(session, site_id).items():
        full = {"channel": "", "source": "", "medium": "", "campaign": "", "keyword": "", "ref": 0, **key}
        for row_grouping, row_day in ((grouping, day), (grouping + WEEK, monday(day))):
            rows.append([project_id, row_grouping, row_day, *full.values()])
    table = SessionDay._meta.db_table
    with connection.cursor() as cursor:
        if sign < 0:
            cursor.executemany(REMOVE_SESSION.format(table=table), rows)
            return
        values = ", ".join("(%s, %s, %s, %s, %s, %s, %s, %s, %s, 1)" for _row in rows)
        cursor.execute(ADD_SESSIONS.format(table=table, values=values), [value for row in rows for value in row])


def ready(project: Project) -> bool:
    """Whether the project's report days were counted in its current time zone."""
    return RollupState.objects.filter(project=project, time_zone=project.time_zone).exists()


def period(grouping: str, date_from: date, date_to: date) -> Q:
    """The rows that sum up a period: its whole weeks (Monday to Sunday) from
    the week rows, the days before and after them from the day rows; so a
    period reads at most 12 days' and a seventh of its weeks' rows."""
    first = monday(date_from + timedelta(days=6))  # the first Monday in the period
    last = monday(date_to + timedelta(days=1)) - timedelta(days=7)  # the Monday of its last whole week
    if last < first:
        return Q(grouping=grouping, day__gte=date_from, day__lte=date_to)
    return (
        Q(grouping=grouping + WEEK, day__gte=first, day__lte=last)
        | Q(grouping=grouping, day__gte=date_from, day__lt=first)
        | Q(grouping=grouping, day__gt=last + timedelta(days=6), day__lte=date_to)
    )


def cost_period(project: Project, date_from: date, date_to: date) -> list[QuerySet]:
    """The rows that sum up a period's costs, as for report days (`period`):
    its whole weeks from `CostWeek`, the days around them from the costs.
    Both have source, medium, campaign and amount. Where no trigger keeps
    the weeks (SQLite), the costs of every day."""
    first = monday(date_from + timedelta(days=6))
    last = monday(date_to + timedelta(days=1)) - timedelta(days=7)
    costs = Cost.objects.filter(project=project)
    if last < first or connection.vendor != "postgresql":
        return [costs.filter(day__gte=date_from, day__lte=date_to)]
    weeks = CostWeek.objects.filter(project_id=project.pk, week__gte=first, week__lte=last, costs__gt=0)
    days = costs.filter(Q(day__gte=date_from, day__lt=first) | Q(day__gt=last + timedelta(days=6), day__lte=date_to))
    return [weeks, days]


def report_days(project: Project, date_from: date, date_to: date, grouping: str) -> QuerySet[ReportDay]:
    """The rows of a period for sums over it (not day by day: see `period`)."""
    return ReportDay.objects.filter(period(grouping, date_from, date_to), project=project)


def session_days(project: Project, date_from: date, date_to: date, grouping: str) -> QuerySet[SessionDay]:
    fold_session_deltas()
    return SessionDay.objects.filter(period(grouping, date_from, date_to), project=project)


def report_days_daily(project: Project, date_from: date, date_to: date, grouping: str) -> QuerySet[ReportDay]:
    """The day rows of a period, for figures day by day."""
    return ReportDay.objects.filter(project=project, grouping=grouping, day__gte=date_from, day__lte=date_to)


def session_days_daily(project: Project, date_from: date, date_to: date, grouping: str) -> QuerySet[SessionDay]:
    fold_session_deltas()
    return SessionDay.objects.filter(project=project, grouping=grouping, day__gte=date_from, day__lte=date_to)


# The queue's rows, taken and added into their days and weeks in one
# statement: a delta committed meanwhile stays for the next fold, and two
# folds never take the same row. Deltas of a project deleted meanwhile go.
FOLD = f"""
WITH moved AS (DELETE FROM {SessionDelta._meta.db_table} RETURNING *)
INSERT INTO {SessionDay._meta.db_table} AS r
    (project_id, grouping, day, channel, source, medium, campaign, keyword, ref, sessions)
SELECT m.project_id, g.grouping || w.suffix, w.day, g.channel, g.source, g.medium, g.campaign, g.keyword, g.ref,
       sum(m.n)
FROM moved m
JOIN {Project._meta.db_table} p ON p.id = m.project_id
CROSS JOIN LATERAL (VALUES (m.day, ''), (date_trunc('week', m.day::timestamp)::date, '{WEEK}')) AS w(day, suffix)
CROSS JOIN LATERAL (VALUES
    ('channel', m.channel, '', '', '', '', 0::bigint),
    ('source', '', m.source, m.medium, '', '', 0::bigint),
    ('medium', '', '', m.medium, '', '', 0::bigint),
    ('campaign', '', m.source, m.medium, m.campaign, '', 0::bigint),
    ('keyword', '', '', '', '', m.keyword, 0::bigint),
    ('site', '', '', '', '', '', m.site_id)
) AS g(grouping, channel, source, medium, campaign, keyword, ref)
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
ON CONFLICT (project_id, grouping, day, channel, source, medium, campaign, keyword, ref)
DO UPDATE SET sessions = r.sessions + excluded.sessions
"""


def fold_session_deltas() -> int:
    """Add the queued sessions (`SessionDelta`) into their days; the number
    of days written. Nothing to do where there are no triggers (SQLite)."""
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(FOLD)
        return cursor.rowcount


def rebuild_every_project() -> int:
    # Only the columns the rebuild reads: a migration runs it before later
    # migrations add the model's other columns.
    return sum(rebuild(project) for project in Project.objects.only("pk", "time_zone").order_by("pk"))


def leads_per_day_and_channel(project: Project, date_from: date, date_to: date) -> list[dict]:
    """[{day, channel, n}] of the days' leads, as the report's chart counts them."""
    rows = (
        report_days_daily(project, date_from, date_to, "channel")
        .values("day", "channel")
        .annotate(n=Sum("leads"))
        .filter(n__gt=0)
        .order_by()
    )
    return list(rows)


def leads_per_campaign(project: Project, date_from: date, date_to: date, offset: int = 0, limit: int | None = None):
    """The groups by source / medium / campaign (the values as the leads
    spell them) with leads in the period, the most leads first (then by
    their values): the `limit` from `offset` (None: all), as a
    `ranked.Page` of rows {key: (source, medium, campaign), leads,
    first_contacts, amount}, the number of groups and their sums."""
    grouped = (
        report_days(project, date_from, date_to, "campaign")
        .values("source", "medium", "campaign")
        .annotate(leads_n=Sum("leads"), first_n=Sum("first_contacts"), amount_n=Sum("amount"))
        .filter(leads_n__gt=0)
        .order_by()
    )
    measures = {"leads": "count", "first_contacts": "count", "amount": "money"}
    if ranked.available():
        part = ranked.Part(
            grouped,
            ["source", "medium", "campaign"],
            {"leads": "leads_n", "first_contacts": "first_n", "amount": "amount_n"},
        )
        return ranked.ranked_page([part], measures, ["leads"], 3, offset, limit)
    rows = [
        {
            "key": (r["source"], r["medium"], r["campaign"]),
            "leads": r["leads_n"],
            "first_contacts": r["first_n"],
            "amount": r["amount_n"],
        }
        for r in grouped
    ]
    rows.sort(key=lambda r: (-r["leads"], r["key"]))
    totals = {
        name: sum((r[name] for r in rows), Decimal("0.00") if kind == "money" else 0) for name, kind in measures.items()
    }
    shown = rows[offset:] if limit is None else rows[offset : offset + limit]
    return ranked.Page(shown, len(rows), totals)
