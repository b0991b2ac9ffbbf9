"""Reports (leads per channel per day in the project's time zone; by source /
medium / campaign) and the streamed CSV export of the filtered list."""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from journal import export, reports
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member
from tracker.models import Channel

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(client):
    setup = make_setup()
    setup.project.time_zone = "Asia/Vladivostok"  # UTC+10: a UTC day would split its days
    setup.project.save()
    client.force_login(member("mark", setup.project))
    return setup


def at_local(day: int, hour: int) -> datetime:
    """`hour`:00 on `day` March 2025 in Vladivostok."""
    return datetime(2025, 3, day, hour, tzinfo=UTC) - timedelta(hours=10)


@pytest.fixture
def march(setup):
    p = setup.project
    make_lead(
        p,
        "a",
        at=at_local(1, 1),
        channel=Channel.PAID,
        source="google",
        medium="cpc",
        campaign="spring",
        deal_amount=Decimal("100"),
    )
    make_lead(
        p,
        "b",
        at=at_local(1, 23),
        channel=Channel.PAID,
        source="google",
        medium="cpc",
        campaign="spring",
        first_contact=False,
    )
    make_lead(
        p,
        "c",
        at=at_local(1, 12),
        channel=Channel.ORGANIC,
        source="yandex",
        medium="organic",
        deal_amount=Decimal("50.5"),
    )
    make_lead(p, "d", at=at_local(3, 0), channel=Channel.PAID, source="google", medium="cpc", campaign="autumn")
    make_lead(p, "outside", at=at_local(4, 0), channel=Channel.PAID, source="google", medium="cpc", campaign="spring")
    other = make_setup(name="Other")
    make_lead(other.project, "another tenant", at=at_local(1, 12), channel=Channel.PAID, source="google")
    return p


def get_report(client, **query):
    response = client.get("/journal/reports/", {"date_from": "2025-03-01", "date_to": "2025-03-03", **query})
    assert response.status_code == 200
    return response.context["report"], response.content.decode()


def test_leads_per_channel_per_day_count_days_in_the_projects_time_zone(client, march):
    report, page = get_report(client)
    assert report.days == [date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)]
    assert report.per_day == {
        date(2025, 3, 1): {"paid": 2, "organic": 1},
        date(2025, 3, 2): {},
        date(2025, 3, 3): {"paid": 1},
    }
    assert [(value, count) for value, _label, _colour, count in report.channels] == [("paid", 3), ("organic", 1)]
    # The chart: one bar segment per (day, channel) with leads, its count in the tooltip.
    assert page.count("<rect ") == 3
    assert "<title>2025-03-01 · Paid search / ads: 2</title>" in page
    assert "<title>2025-03-03 · Paid search / ads: 1</title>" in page
    assert '<tr data-channel="paid"><td>Paid search / ads</td><td class="num">3</td></tr>' in page


def test_the_table_by_source_medium_campaign_has_leads_first_contact_share_and_amount(client, march):
    report, page = get_report(client)
    rows = [(r.source, r.medium, r.campaign, r.leads, r.first_contacts, r.amount) for r in report.rows]
    assert rows == [
        ("google", "cpc", "spring", 2, 1, Decimal("100")),
        ("google", "cpc", "autumn", 1, 1, Decimal("0")),
        ("yandex", "organic", "", 1, 1, Decimal("50.5")),
    ]
    assert (report.total.leads, report.total.first_contacts, report.total.amount) == (4, 3, Decimal("150.5"))
    assert '<td class="num first">50%</td>' in page
    assert '<strong id="total-leads">4</strong>' in page
    assert "another tenant" not in page


def test_a_long_table_is_cut_but_its_totals_count_every_lead(client, march, monkeypatch):
    monkeypatch.setattr(reports, "TABLE_ROWS", 1)
    report, page = get_report(client)
    assert [(r.source, r.campaign, r.leads) for r in report.rows] == [("google", "spring", 2)]
    assert report.more_rows == 2
    assert (report.total.leads, report.total.amount) == (4, Decimal("150.5"))
    assert "and 2 smaller rows not shown" in page


def test_the_report_applies_the_lists_filters(client, march):
    report, _ = get_report(client, channel="organic")
    assert report.total.leads == 1
    report, _ = get_report(client, contact="returning")
    assert [(r.source, r.leads) for r in report.rows] == [("google", 1)]


def test_the_default_period_is_the_last_30_days_and_a_period_is_at_most_a_year(client, setup):
    make_lead(setup.project, "today", at=timezone.now())
    make_lead(setup.project, "long ago", at=timezone.now() - timedelta(days=40))
    response = client.get("/journal/reports/")
    report = response.context["report"]
    assert len(report.days) == 30
    assert report.total.leads == 1
    response = client.get("/journal/reports/", {"date_from": "2020-01-01", "date_to": "2025-03-03"})
    report = response.context["report"]
    assert len(report.days) == reports.MAX_DAYS
    assert report.end == date(2025, 3, 3)
    assert "at most 366 days" in response.content.decode()


def test_the_axis_top_is_a_round_number():
    assert [reports.nice_ceiling(n) for n in (1, 3, 7, 10, 11, 40, 51, 900)] == [1, 5, 10, 10, 20, 50, 100, 1000]


# --- CSV export ---------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.reader(io.StringIO(body[1:])))


def test_the_export_streams_the_filtered_list_with_local_times(client, march):
    response = client.get("/journal/export.csv", {"channel": "paid", "campaign": "spring"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="leads-')
    rows = read_csv(response)
    assert rows[0] == export.HEADER
    column = {name: i for i, name in enumerate(export.HEADER)}
    assert [row[column["subject"]] for row in rows[1:]] == ["outside", "b", "a"]
    assert rows[-1][column["date"]] == "2025-03-01 01:00:00"
    assert rows[-1][column["time zone"]] == "Asia/Vladivostok"
    assert rows[-1][column["deal amount"]] == "100.00"


def test_export_cells_that_a_spreadsheet_would_run_are_neutralised(client, setup):
    make_lead(
        setup.project,
        '=HYPERLINK("http://evil.test","click")',
        sender_name="+1 234",
        source="-2+3",
        campaign="@SUM(A1)",
        comment="\tTAB",
        keyword="plain",
        tags=["=cmd"],
    )
    rows = read_csv(client.get("/journal/export.csv"))
    column = {name: i for i, name in enumerate(export.HEADER)}
    row = rows[1]
    assert row[column["subject"]] == '\'=HYPERLINK("http://evil.test","click")'
    assert row[column["sender name"]] == "'+1 234"
    assert row[column["source"]] == "'-2+3"
    assert row[column["campaign"]] == "'@SUM(A1)"
    assert row[column["comment"]] == "'\tTAB"
    assert row[column["tags"]] == "'=cmd"
    assert row[column["keyword"]] == "plain"


def test_the_export_reads_in_keyset_chunks_and_keeps_every_lead_once(client, setup, monkeypatch):
    monkeypatch.setattr(export, "CHUNK", 7)
    same = timezone.now().replace(microsecond=0)
    for n in range(30):
        make_lead(setup.project, f"Lead {n:02d}", at=same - timedelta(seconds=n // 4), tags=["t"])
    rows = read_csv(client.get("/journal/export.csv"))
    subjects = [row[export.HEADER.index("subject")] for row in rows[1:]]
    assert sorted(subjects) == [f"Lead {n:02d}" for n in range(30)]
    assert all(row[export.HEADER.index("tags")] == "t" for row in rows[1:])
