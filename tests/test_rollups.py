"""Report days (costs.rollups): kept in step with the leads and sessions as
they are created, changed, erased and deleted, they always equal the days
counted from scratch from the raw rows; days are the project's (a lead just
after local midnight is the next day's); the report read from them equals the
report read from the rows, for every grouping."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncWeek

from attribution import privacy
from attribution.leads import lead_update
from attribution.models import Lead
from costs import rollups, series
from costs.csv_import import CostRow
from costs.endtoend import GROUPINGS, end_to_end
from costs.models import Cost, CostSourceDay, CostWeek, ReportDay, RollupState, SessionDay, SessionDelta
from costs.services import costs_upsert
from costs.tasks import rebuild_report_days
from journal import reports
from mailbox_sync.models import Reply
from projects.models import Project
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member, visit_and_write
from tracker.models import Channel, Session, Visitor
from tracker.services import collect, parse_request

pytestmark = pytest.mark.django_db

MOSCOW = "Europe/Moscow"  # UTC+3: 21:00 UTC is the next day's midnight
BEFORE_MIDNIGHT = datetime(2025, 7, 1, 20, 59, tzinfo=UTC)  # 1 July, 23:59 in Moscow
AFTER_MIDNIGHT = datetime(2025, 7, 1, 21, 1, tzinfo=UTC)  # 2 July, 00:01 in Moscow
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
PAID = {"channel": Channel.PAID, "source": "Yandex", "medium": "cpc", "campaign": "Autumn", "keyword": "bricks"}


def snapshot(project) -> dict:
    """Every report day and sessions day of the project, as comparable tuples."""
    rollups.fold_session_deltas()
    keys = ["grouping", "day", "channel", "source", "medium", "campaign", "keyword", "ref"]
    leads = ReportDay.objects.filter(project=project).values_list(*keys, "leads", "first_contacts", "deals", "amount")
    sessions = SessionDay.objects.filter(project=project, sessions__gt=0).values_list(*keys, "sessions")
    return {"leads": sorted(leads), "sessions": sorted(sessions)}


def assert_days_as_rebuilt(project) -> dict:
    kept = snapshot(project)
    rollups.rebuild(project)
    rebuilt = snapshot(project)
    assert kept == rebuilt
    return rebuilt


def visit(setup, at, vid, **fields):
    person = Visitor.objects.create(site=setup.site, vid=vid, created_at=at, last_seen_at=at)
    return Session.objects.create(visitor=person, started_at=at, last_seen_at=at, **fields)


def day_figures(project, day, grouping="channel") -> dict:
    rows = ReportDay.objects.filter(project=project, day=day, grouping=grouping)
    return {row.channel or row.source or row.ref: (row.leads, row.deals, row.amount) for row in rows}


@pytest.fixture
def shop():
    setup = make_setup()
    Project.objects.filter(pk=setup.project.pk).update(time_zone=MOSCOW)
    setup.project.refresh_from_db()
    rollups.rebuild(setup.project)  # the time zone changed behind the signals' back
    return setup


def test_days_follow_creates_changes_erasure_and_deletions_and_equal_a_rebuild(
    shop, django_capture_on_commit_callbacks
):
    project = shop.project
    early = make_lead(project, at=BEFORE_MIDNIGHT, sender_email="a@client.test", **PAID)
    late = make_lead(project, at=AFTER_MIDNIGHT, sender_email="b@client.test", **PAID)
    visit(shop, BEFORE_MIDNIGHT, "v1", channel=Channel.PAID, source="Yandex", utm_medium="cpc")
    visit(shop, AFTER_MIDNIGHT, "v2", channel=Channel.PAID, source="Yandex", utm_medium="cpc")
    # A lead made by the real pipeline: letters stored, attributed in bulk, emitted.
    piped = visit_and_write(shop, AFTER_MIDNIGHT, "v3", sender="c@client.test", channel=Channel.ORGANIC)
    assert piped is not None
    assert day_figures(project, date(2025, 7, 1)) == {Channel.PAID: (1, 0, Decimal("0.00"))}
    assert day_figures(project, date(2025, 7, 2)) == {
        Channel.PAID: (1, 0, Decimal("0.00")),
        Channel.ORGANIC: (1, 0, Decimal("0.00")),
    }
    assert_days_as_rebuilt(project)

    lead_update(lead=late, status=Lead.Status.WON, deal_amount="1500.50")
    lead_update(lead=early, comment="called back")
    assert day_figures(project, date(2025, 7, 2))[Channel.PAID] == (1, 1, Decimal("1500.50"))
    assert_days_as_rebuilt(project)

    late.refresh_from_db()
    late.channel, late.source = Channel.REFERRAL, "partner.test"  # an admin moves it to another group
    late.save()
    assert day_figures(project, date(2025, 7, 2)) == {
        Channel.REFERRAL: (1, 1, Decimal("1500.50")),
        Channel.ORGANIC: (1, 0, Decimal("0.00")),
    }
    assert_days_as_rebuilt(project)

    privacy.erase_person(project.pk, "b@client.test")
    late.refresh_from_db()
    assert late.sender_email == ""
    assert_days_as_rebuilt(project)

    with django_capture_on_commit_callbacks(execute=True):
        early.delete()
    Session.objects.filter(visitor__vid="v2").delete()
    assert day_figures(project, date(2025, 7, 1)) == {}
    kept = assert_days_as_rebuilt(project)
    assert [row[-1] for row in kept["sessions"] if row[0] == "channel"] == [1, 1]  # v1 on 1 July, v3 on 2 July


def test_sessions_inserted_without_the_orm_are_counted_too(shop):
    """Collect inserts a new visitor's session in plain SQL; the table's triggers count it."""
    if connection.vendor != "postgresql":
        pytest.skip("the triggers are PostgreSQL's")
    person = Visitor.objects.create(site=shop.site, vid="raw", created_at=AFTER_MIDNIGHT, last_seen_at=AFTER_MIDNIGHT)
    Session.objects.bulk_create(  # no signals
        [
            Session(visitor=person, started_at=at, last_seen_at=at, channel=Channel.SOCIAL, source="vk.com")
            for at in (BEFORE_MIDNIGHT, AFTER_MIDNIGHT, AFTER_MIDNIGHT)
        ]
    )
    counted = SessionDay.objects.filter(project=shop.project, grouping="source", source="vk.com")
    # Queued, one row per day and group: no sessions-day row was touched, so
    # new visitors never wait on each other's.
    assert not counted.exists()
    queued = SessionDelta.objects.filter(project_id=shop.project.pk, source="vk.com")
    assert sorted(queued.values_list("day", "n")) == [(date(2025, 7, 1), 1), (date(2025, 7, 2), 2)]
    assert rollups.fold_session_deltas() > 0
    assert not queued.exists()
    assert sorted(counted.values_list("day", "sessions")) == [(date(2025, 7, 1), 1), (date(2025, 7, 2), 2)]
    week = SessionDay.objects.get(project=shop.project, grouping="source/week", source="vk.com")
    assert (week.day, week.sessions) == (date(2025, 6, 30), 3)
    assert_days_as_rebuilt(shop.project)
    Session.objects.filter(visitor=person).delete()
    assert sorted(queued.values_list("n", flat=True)) == [-2, -1]
    rollups.fold_session_deltas()
    assert set(counted.values_list("sessions", flat=True)) == {0}


def test_a_first_visit_queues_its_session_in_its_own_statement_once(shop):
    """Collect's first-visit statement queues the session it inserts itself, and
    the table's trigger leaves that statement's rows alone: counted once, on
    the project's day. A session inserted after it in the same transaction is
    queued by the trigger as ever (the statement's word holds for itself only)."""
    if connection.vendor != "postgresql":
        pytest.skip("the triggers are PostgreSQL's")
    url = "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"
    raw = json.dumps({"v": 1, "site": shop.site.site_key, "vid": None, "url": url, "ref": "", "consent": True})
    answer = collect(
        request=parse_request(raw.encode()), origin="https://shop.test", user_agent=BROWSER, now=BEFORE_MIDNIGHT
    )
    queued = SessionDelta.objects.filter(project_id=shop.project.pk).order_by("pk")
    fields = ("day", "channel", "source", "medium", "campaign", "keyword", "site_id", "n")
    assert list(queued.values_list(*fields)) == [
        (date(2025, 7, 1), Channel.EMAIL, "newsletter", "email", "autumn", "", shop.site.pk, 1)
    ]
    person = Visitor.objects.get(vid=answer["vid"])
    Session.objects.bulk_create(  # no signals: the trigger's count
        [Session(visitor=person, started_at=AFTER_MIDNIGHT, last_seen_at=AFTER_MIDNIGHT, channel=Channel.SOCIAL)]
    )
    assert list(queued.values_list("day", "channel", "n"))[1:] == [(date(2025, 7, 2), Channel.SOCIAL, 1)]
    kept = assert_days_as_rebuilt(shop.project)
    assert sorted(row[1:4] + row[-1:] for row in kept["sessions"] if row[0] == "channel") == [
        (date(2025, 7, 1), Channel.EMAIL, "", 1),
        (date(2025, 7, 2), Channel.SOCIAL, "", 1),
    ]


def test_a_rebuild_takes_the_queued_sessions_of_its_range_only(shop):
    if connection.vendor != "postgresql":
        pytest.skip("the queue is filled by PostgreSQL's triggers")
    person = Visitor.objects.create(
        site=shop.site, vid="queued", created_at=AFTER_MIDNIGHT, last_seen_at=AFTER_MIDNIGHT
    )
    Session.objects.bulk_create(
        [
            Session(visitor=person, started_at=at, last_seen_at=at, source="ok.ru")
            for at in (BEFORE_MIDNIGHT, AFTER_MIDNIGHT)
        ]
    )
    rollups.rebuild(shop.project, date(2025, 7, 2), date(2025, 7, 2))
    # 2 July was counted from the rows; 1 July's session is still queued, once.
    assert list(SessionDelta.objects.filter(project_id=shop.project.pk).values_list("day", "n")) == [
        (date(2025, 7, 1), 1)
    ]
    assert_days_as_rebuilt(shop.project)
    day = SessionDay.objects.filter(project=shop.project, grouping="source", source="ok.ru")
    assert sorted(day.values_list("day", "sessions")) == [(date(2025, 7, 1), 1), (date(2025, 7, 2), 1)]


def shop_with_everything(setup):
    """Leads, sessions, costs and replies over two local days, in several groups."""
    project = setup.project
    for n, at in enumerate([BEFORE_MIDNIGHT, AFTER_MIDNIGHT, AFTER_MIDNIGHT + timedelta(hours=5)]):
        visit(setup, at, f"p{n}", channel=Channel.PAID, source="yandex", utm_medium="CPC", utm_campaign="Autumn")
        visit(setup, at, f"o{n}", channel=Channel.ORGANIC, source="google", keyword="bricks")
    leads = [
        make_lead(project, at=BEFORE_MIDNIGHT, site=setup.site, **PAID),
        make_lead(project, at=AFTER_MIDNIGHT, site=setup.site, status=Lead.Status.WON, deal_amount=700, **PAID),
        make_lead(project, at=AFTER_MIDNIGHT, channel=Channel.ORGANIC, source="google", keyword="Bricks"),
        make_lead(project, at=AFTER_MIDNIGHT, channel=Channel.DIRECT, first_contact=False),
    ]
    leads.append(visit_and_write(setup, AFTER_MIDNIGHT, "w", sender="d@client.test", channel=Channel.DIRECT))
    Reply.objects.create(
        mailbox=setup.mailbox,
        folder="Sent",
        uidvalidity=1,
        uid=1,
        dedupe_key="r1",
        sent_at=leads[-1].created_at + timedelta(minutes=40),
        lead=leads[-1],
    )
    Cost.objects.create(project=project, day=date(2025, 7, 2), source="yandex", medium="cpc", amount=300)
    Cost.objects.create(project=project, day=date(2025, 7, 1), source="vk", medium="cpc", amount=100)
    return leads


def as_compared(report) -> tuple:
    rows = [
        (r.key, r.labels, r.sessions, r.leads, r.first_contacts, r.deals, r.amount, r.cost, r.extra)
        for r in report.rows
    ]
    t = report.total
    return rows, (t.sessions, t.leads, t.first_contacts, t.deals, t.amount, t.cost, t.extra), report.more_rows


@pytest.mark.parametrize("grouping", list(GROUPINGS))
def test_the_report_from_days_equals_the_report_from_rows(shop, grouping):
    shop_with_everything(shop)
    project = shop.project
    first, last = date(2025, 7, 1), date(2025, 7, 2)
    start, end = rollups.day_bounds(MOSCOW, first)[0], rollups.day_bounds(MOSCOW, last)[1]
    assert rollups.ready(project)
    from_days = end_to_end(project=project, leads=None, date_from=first, date_to=last, grouping=grouping)
    leads = Lead.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    from_rows = end_to_end(project=project, leads=leads, date_from=first, date_to=last, grouping=grouping)
    assert as_compared(from_days) == as_compared(from_rows)
    assert from_days.total.leads == 5 and from_days.total.sessions == 7  # the pipeline lead has a visit too


def test_the_report_page_reads_days_when_unfiltered_and_agrees_with_a_filtered_one(client, shop):
    shop_with_everything(shop)
    client.force_login(member("mark", shop.project))
    period = {"project": shop.project.pk, "date_from": "2025-07-01", "date_to": "2025-07-02", "format": "csv"}
    whole = b"".join(client.get("/journal/reports/", period))
    # A filter that keeps every lead makes the report read the leads themselves.
    filtered = b"".join(client.get("/journal/reports/", {**period, "contact": ""}))
    assert whole == filtered
    ReportDay.objects.filter(project=shop.project).delete()  # days gone: the page shows what the days say
    assert b"".join(client.get("/journal/reports/", period)) != whole


def test_a_new_time_zone_reads_the_rows_until_its_days_are_counted_again(shop):
    shop_with_everything(shop)
    project = shop.project
    project.time_zone = "America/New_York"
    project.save()  # the listener asks for a rebuild after commit
    assert not rollups.ready(project)
    first, last = date(2025, 7, 1), date(2025, 7, 2)
    from_rows = end_to_end(project=project, leads=None, date_from=first, date_to=last, grouping="channel")
    rebuild_report_days(project.pk)  # what the queued task does
    assert RollupState.objects.get(project=project).time_zone == "America/New_York"
    from_days = end_to_end(project=project, leads=None, date_from=first, date_to=last, grouping="channel")
    assert as_compared(from_days) == as_compared(from_rows)
    assert set(ReportDay.objects.filter(project=project, grouping="channel").values_list("day", flat=True)) == {
        date(2025, 7, 1)
    }


def test_the_command_rebuilds_a_range_and_refuses_an_unknown_project(shop, capsys):
    shop_with_everything(shop)
    project = shop.project
    ReportDay.objects.filter(project=project, day=date(2025, 7, 2)).update(leads=99)
    SessionDay.objects.filter(project=project, day=date(2025, 7, 1)).delete()
    call_command("rebuild_report_days", "--project", str(project.pk), "--from", "2025-07-01", "--to", "2025-07-02")
    assert "report days" in capsys.readouterr().out
    assert_days_as_rebuilt(project)
    with pytest.raises(Exception, match="No project"):
        call_command("rebuild_report_days", "--project", "999999")


def test_deleting_a_site_counts_the_days_again_after_commit(shop, django_capture_on_commit_callbacks, settings):
    """The site's leads lose their site (set to none): the site grouping's days follow."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    leads = shop_with_everything(shop)
    other = shop.site.__class__.objects.create(project=shop.project, name="Other", original_email="o@shop.test")
    Lead.objects.filter(pk=leads[0].pk).update(site=other)
    rollups.recount_leads([leads[0].pk])
    with django_capture_on_commit_callbacks(execute=True):
        other.delete()
    site_days = ReportDay.objects.filter(project=shop.project, grouping="site")
    assert other.pk not in set(site_days.values_list("ref", flat=True))
    assert_days_as_rebuilt(shop.project)


@pytest.mark.parametrize("first,last", [(date(2025, 6, 24), date(2025, 7, 16)), (date(2025, 6, 30), date(2025, 7, 13))])
def test_a_period_of_whole_weeks_and_odd_days_sums_to_the_rows(shop, first, last):
    """Whole weeks are read from week rows, the days around them from day rows."""
    project = shop.project
    for n in range(30):
        at = datetime(2025, 6, 20, 12, tzinfo=UTC) + timedelta(days=n)
        make_lead(
            project, at=at, channel=Channel.PAID, source="yandex", campaign=f"c{n % 3}", status="won", deal_amount=n
        )
        visit(shop, at, f"s{n}", channel=Channel.PAID, source="yandex", utm_campaign=f"c{n % 4}")
        Cost.objects.create(
            project=project, day=at.date(), source="Yandex", medium="cpc", campaign=f"c{n % 5}", amount=n
        )
    assert_days_as_rebuilt(project)
    assert_cost_weeks_as_counted(project)
    start, end = rollups.day_bounds(MOSCOW, first)[0], rollups.day_bounds(MOSCOW, last)[1]
    leads = Lead.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    for grouping in ("campaign", "channel", "source", "keyword"):
        from_days = end_to_end(project=project, leads=None, date_from=first, date_to=last, grouping=grouping)
        from_rows = end_to_end(project=project, leads=leads, date_from=first, date_to=last, grouping=grouping)
        assert as_compared(from_days) == as_compared(from_rows)
        assert from_days.total.leads == (last - first).days + 1
        assert from_days.total.cost == sum(range((first - date(2025, 6, 20)).days, (last - date(2025, 6, 20)).days + 1))
    assert series.daily_by_source(project, None, first, last) == series.daily_by_source(project, leads, first, last)


def test_the_report_shows_its_tables_a_page_at_a_time(client, shop, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_ROWS", 2)
    for n in range(5):
        make_lead(shop.project, at=AFTER_MIDNIGHT, channel=Channel.PAID, source="yandex", campaign=f"c{n}")
    client.force_login(member("mark", shop.project))
    query = {"project": shop.project.pk, "date_from": "2025-07-01", "date_to": "2025-07-02", "group": "campaign"}
    pages = [client.get("/journal/reports/", {**query, "page": page}).context["funnel"] for page in (1, 2, 3)]
    assert [len(page.rows) for page in pages] == [2, 2, 1] and [page.more_rows for page in pages] == [3, 1, 0]
    assert {row[2] for page in pages for row in page.rows} == {f"c{n}" for n in range(5)}
    assert 'id="next-rows"' in client.get("/journal/reports/", query).content.decode()
    csv_rows = b"".join(client.get("/journal/reports/", {**query, "format": "csv"})).decode().strip().splitlines()
    assert len(csv_rows) == 1 + 5 + 1  # header, every row, total
    assert client.get("/journal/reports/", {**query, "page": "x"}).status_code == 200


def many_groups(setup) -> None:
    """Eleven sources, media and keywords and four campaigns, with ties in
    every figure, names that differ only in case or in letters beyond ASCII,
    costs with no traffic."""
    project = setup.project
    names = ["b", "B", "a", "Äpfel", "zeta", "Ünd", "yandex", "ya", "_x", "ё", "e"]
    for n, name in enumerate(names):
        medium = names[(n * 7) % len(names)]
        for k in range(1 + n % 3):
            at = AFTER_MIDNIGHT + timedelta(hours=k)
            paid = {"channel": Channel.PAID, "source": name, "keyword": name}
            make_lead(project, at=at, medium=medium, campaign=f"C{n % 4}", **paid)
            if n % 2:
                visit(setup, at, f"{n}-{k}", utm_medium=medium, utm_campaign=f"c{n % 4}", **paid)
    for name, medium, amount in (("nobody", "cpc", 50), ("b", "b", 7), ("a", "cpc", 7), ("ё", "ё", 0)):
        Cost.objects.create(
            project=project, day=date(2025, 7, 2), source=name, medium=medium, campaign="c1", amount=amount
        )


@pytest.mark.parametrize("grouping", ["source", "medium", "campaign", "keyword"])
def test_a_page_of_the_report_from_days_is_that_page_of_the_report_from_rows(shop, grouping):
    """The database ranks and pages the groups as the rows' report sorts them."""
    many_groups(shop)
    project = shop.project
    first, last = date(2025, 7, 1), date(2025, 7, 2)
    start, end = rollups.day_bounds(MOSCOW, first)[0], rollups.day_bounds(MOSCOW, last)[1]
    leads = Lead.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    whole = end_to_end(project=project, leads=leads, date_from=first, date_to=last, grouping=grouping)
    rows, total, _more = as_compared(whole)
    assert len(rows) > 3
    for offset in range(0, len(rows) + 3, 3):
        page = end_to_end(
            project=project, leads=None, date_from=first, date_to=last, grouping=grouping, offset=offset, limit=3
        )
        assert as_compared(page) == (rows[offset : offset + 3], total, max(len(rows) - offset - 3, 0))
    everything = end_to_end(project=project, leads=None, date_from=first, date_to=last, grouping=grouping)
    assert as_compared(everything) == as_compared(whole)


def test_the_sources_table_and_charts_from_days_equal_those_from_rows(shop, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_ROWS", 4)
    many_groups(shop)
    project = shop.project
    first, last = date(2025, 7, 1), date(2025, 7, 2)
    start, end = rollups.day_bounds(MOSCOW, first)[0], rollups.day_bounds(MOSCOW, last)[1]
    leads = Lead.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    for page in (1, 2, 3, 4, 9):
        from_days = reports.build_report(None, MOSCOW, first, last, project=project, page=page)
        from_rows = reports.build_report(leads, MOSCOW, first, last, project=project, page=page)
        assert (from_days.rows, from_days.more_rows, from_days.total) == (
            from_rows.rows,
            from_rows.more_rows,
            from_rows.total,
        )
    assert len(reports.build_report(None, MOSCOW, first, last, project=project, page=2).rows) == 4
    from_days = series.daily_by_source(project, None, first, last)
    from_rows = series.daily_by_source(project, leads, first, last)
    assert from_days == from_rows
    assert len(from_days[1]) == series.TOP_SOURCES


def cost_weeks(project) -> list[tuple]:
    rows = CostWeek.objects.filter(project_id=project.pk)
    return sorted(rows.values_list("week", "source", "medium", "campaign", "amount", "costs"))


def assert_cost_weeks_as_counted(project) -> None:
    """The costs' weeks, and their days by source, equal those summed from the costs themselves."""
    direct = (
        Cost.objects.filter(project=project)
        .annotate(week=TruncWeek("day"))
        .values_list("week", "source", "medium", "campaign")
        .annotate(amount=Sum("amount"), n=Count("id"))
        .order_by()
    )
    assert cost_weeks(project) == sorted(direct)
    by_source = (
        Cost.objects.filter(project=project).values_list("day", "source").annotate(s=Sum("amount"), n=Count("id"))
    )
    kept = CostSourceDay.objects.filter(project_id=project.pk).values_list("day", "source", "amount", "costs")
    assert sorted(kept) == sorted(by_source.order_by())


def test_the_costs_weeks_follow_imports_changes_and_deletions(shop):
    if connection.vendor != "postgresql":
        pytest.skip("the cost table's trigger is PostgreSQL's")
    project = shop.project
    rows = [
        CostRow(
            day=date(2025, 6, 30) + timedelta(days=n),
            source="Yandex",
            medium="cpc",
            campaign=f"c{n % 2}",
            amount=Decimal(10 + n),
        )
        for n in range(10)
    ]
    costs_upsert(project=project, rows=rows, origin=Cost.Origin.API)
    assert_cost_weeks_as_counted(project)
    assert (date(2025, 6, 30), "Yandex", "cpc", "c0", Decimal("52.00"), 4) in cost_weeks(project)  # 10 + 12 + 14 + 16
    # The same import again replaces the amounts: nothing changes; new amounts replace the old ones.
    costs_upsert(project=project, rows=rows, origin=Cost.Origin.API)
    assert_cost_weeks_as_counted(project)
    costs_upsert(project=project, rows=[CostRow(rows[0].day, "Yandex", "cpc", "c0", Decimal("0.50"))], origin="csv")
    assert_cost_weeks_as_counted(project)
    # Moved to another week and group (admin), then deleted.
    moved = Cost.objects.get(project=project, day=date(2025, 7, 1))
    moved.day, moved.campaign = date(2025, 7, 20), "autumn"
    moved.save()
    assert_cost_weeks_as_counted(project)
    Cost.objects.filter(project=project, campaign="autumn").delete()
    assert not CostWeek.objects.filter(project_id=project.pk, campaign="autumn").exists()  # its last cost went
    Cost.objects.filter(project=project, day__gte=date(2025, 7, 7)).delete()
    assert_cost_weeks_as_counted(project)
    other = Project.objects.create(name="Gone", time_zone=MOSCOW)
    costs_upsert(project=other, rows=rows[:3], origin=Cost.Origin.API)
    assert CostWeek.objects.filter(project_id=other.pk).exists()
    other.delete()
    assert not CostWeek.objects.filter(project_id=other.pk).exists()
    assert not CostSourceDay.objects.filter(project_id=other.pk).exists()
