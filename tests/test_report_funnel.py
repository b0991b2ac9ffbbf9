"""The end-to-end report: sessions, leads, first contacts, conversion, deals
and amount, cost, cost per lead, cost per deal and ROI per grouping, checked
against figures worked out by hand on a fixture; costs without traffic are
kept; the CSV equals the page; the API summary gives the same figures."""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from attribution.models import Lead
from costs.endtoend import cost_channel, end_to_end
from costs.models import Cost
from integrations.keys import api_key_create
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member
from tracker.models import Channel, Session, Site, Visitor

pytestmark = pytest.mark.django_db

DAY1 = datetime(2025, 7, 1, 10, 0, tzinfo=UTC)
PERIOD = {"date_from": "2025-07-01", "date_to": "2025-07-02"}


def sessions(setup, n, at, **fields):
    for i in range(n):
        person = Visitor.objects.create(
            site=setup.site, vid=f"v-{fields.get('utm_campaign', 'o')}-{at:%d}-{i}", created_at=at, last_seen_at=at
        )
        Session.objects.create(visitor=person, started_at=at, last_seen_at=at, **fields)


@pytest.fixture
def shop(client):
    """By hand, by source / medium / campaign over 1–2 July:
    yandex/cpc/autumn: 10 sessions, 2 leads (1 won for 5000), cost 1000 + 500;
    google/cpc/brand: 5 sessions, 1 lead, cost 300;
    google (organic, no medium or campaign): 4 sessions, no lead, no cost;
    vk/cpc/summer: no traffic, cost 200."""
    setup = make_setup()
    yandex = {"channel": Channel.PAID, "source": "yandex", "utm_medium": "cpc", "utm_campaign": "autumn"}
    sessions(setup, 6, DAY1, **yandex)
    sessions(setup, 4, DAY1 + timedelta(days=1), **yandex)
    sessions(setup, 5, DAY1, channel=Channel.PAID, source="google", utm_medium="cpc", utm_campaign="brand")
    sessions(setup, 4, DAY1, channel=Channel.ORGANIC, source="google")
    sessions(setup, 3, DAY1 - timedelta(days=1), **yandex)  # before the period
    paid = {"channel": Channel.PAID, "source": "yandex", "medium": "cpc", "campaign": "autumn"}
    make_lead(setup.project, at=DAY1 + timedelta(hours=1), status=Lead.Status.WON, deal_amount=Decimal("5000"), **paid)
    make_lead(setup.project, at=DAY1 + timedelta(days=1), first_contact=False, **paid)
    make_lead(
        setup.project,
        at=DAY1 + timedelta(hours=2),
        channel=Channel.PAID,
        source="google",
        medium="cpc",
        campaign="brand",
    )
    for day, source, campaign, amount in [
        (date(2025, 7, 1), "yandex", "autumn", "1000"),
        (date(2025, 7, 2), "yandex", "autumn", "500"),
        (date(2025, 7, 1), "google", "brand", "300"),
        (date(2025, 7, 2), "vk", "summer", "200"),
        (date(2025, 7, 3), "vk", "summer", "999"),  # after the period
    ]:
        Cost.objects.create(
            project=setup.project, day=day, source=source, medium="cpc", campaign=campaign, amount=Decimal(amount)
        )
    client.force_login(member("mark", setup.project))
    return setup


def report(setup, grouping):
    leads = Lead.objects.filter(
        project=setup.project, created_at__gte=DAY1 - timedelta(hours=10), created_at__lt=DAY1 + timedelta(days=2)
    )
    return end_to_end(
        project=setup.project, leads=leads, date_from=date(2025, 7, 1), date_to=date(2025, 7, 2), grouping=grouping
    )


def test_by_campaign_the_figures_equal_the_hand_computed_ones(shop):
    result = report(shop, "campaign")
    rows = {row.key: row for row in result.rows}
    yandex = rows[("yandex", "cpc", "autumn")]
    assert (yandex.sessions, yandex.leads, yandex.first_contacts, yandex.deals) == (10, 2, 1, 1)
    assert yandex.conversion == 20.0
    assert yandex.amount == Decimal("5000") and yandex.cost == Decimal("1500")
    assert yandex.cost_per_lead == Decimal("750.00") and yandex.cost_per_deal == Decimal("1500.00")
    assert yandex.roi == 233.33  # (5000 - 1500) / 1500
    google = rows[("google", "cpc", "brand")]
    assert (google.sessions, google.leads, google.conversion, google.cost_per_lead) == (5, 1, 20.0, Decimal("300.00"))
    assert google.cost_per_deal is None and google.roi == -100.0
    organic = rows[("google", "", "")]
    assert (organic.sessions, organic.leads, organic.conversion, organic.cost_per_lead) == (4, 0, 0.0, None)
    total = result.total
    assert (total.sessions, total.leads, total.deals) == (19, 3, 1)
    assert total.cost == Decimal("2000") and total.cost_per_lead == Decimal("666.67")
    assert total.roi == 150.0


def test_costs_with_no_matching_traffic_are_a_row_of_their_own(shop):
    vk = {row.key: row for row in report(shop, "campaign").rows}[("vk", "cpc", "summer")]
    assert (vk.sessions, vk.leads, vk.cost, vk.conversion, vk.cost_per_lead) == (0, 0, Decimal("200"), None, None)
    assert vk.roi == -100.0


def test_by_channel_costs_go_to_the_channel_their_tags_give(shop):
    assert cost_channel("yandex", "cpc") == Channel.PAID
    assert cost_channel("vk", "cpc") == Channel.PAID_SOCIAL
    rows = {row.key: row for row in report(shop, "channel").rows}
    assert rows[(Channel.PAID,)].cost == Decimal("1800")
    assert rows[(Channel.PAID_SOCIAL,)].cost == Decimal("200") and rows[(Channel.PAID_SOCIAL,)].sessions == 0
    assert rows[(Channel.PAID,)].sessions == 15 and rows[(Channel.PAID,)].leads == 3
    assert rows[(Channel.ORGANIC,)].sessions == 4 and rows[(Channel.ORGANIC,)].cost == 0


def test_by_keyword_site_or_block_costs_are_only_a_total(shop):
    for grouping in ("keyword", "site", "block"):
        result = report(shop, grouping)
        assert all(row.cost is None for row in result.rows), grouping
        assert result.total.cost == Decimal("2000")
        assert result.total.leads == 3
    site = report(shop, "site")
    by_site = {row.labels: row for row in site.rows}
    assert by_site[(shop.site.name,)].sessions == 19 and by_site[(shop.site.name,)].leads == 0
    assert by_site[("",)].leads == 3  # these leads have no site
    assert report(shop, "block").total.sessions == 19


def page_table(html: str, table_id: str) -> list[list[str]]:
    start = html.index(f'id="{table_id}"')
    body = html[start : html.index("</table>", start)]
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in body.split("<tr")[1:]]


def test_the_page_shows_the_table_and_its_csv_has_the_same_cells(client, shop):
    query = {"project": shop.project.pk, **PERIOD, "group": "campaign"}
    page = client.get("/journal/reports/", query)
    assert page.status_code == 200
    html = page.content.decode()
    on_page = page_table(html, "funnel")
    answer = client.get("/journal/reports/", {**query, "format": "csv"})
    assert answer["Content-Type"].startswith("text/csv")
    in_csv = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode("utf-8-sig"))))
    assert [[c.replace("&amp;", "&") for c in row] for row in on_page] == in_csv
    assert in_csv[-1][:3] == ["All", "", ""]
    assert in_csv[-1][3:13] == ["19", "3", "2", "15.8%", "1", "5000.00", "2000.00", "666.67", "2000.00", "150.0%"]
    yandex = next(row for row in in_csv if row[:3] == ["yandex", "cpc", "autumn"])
    assert yandex[3:13] == ["10", "2", "1", "20.0%", "1", "5000.00", "1500.00", "750.00", "1500.00", "233.3%"]


def test_an_unknown_grouping_falls_back_to_channel(client, shop):
    page = client.get("/journal/reports/", {"project": shop.project.pk, **PERIOD, "group": "nonsense"})
    assert 'data-grouping="channel"' in page.content.decode()


def test_the_api_summary_gives_the_same_figures(client, shop):
    _row, key = api_key_create(project=shop.project, name="BI")
    answer = client.get("/api/v1/summary", {**PERIOD, "group_by": "campaign"}, HTTP_AUTHORIZATION=f"Bearer {key}")
    assert answer.status_code == 200
    data = answer.json()
    total = data["total"]
    assert (total["sessions"], total["leads"], total["won"]) == (19, 3, 1)
    assert total["cost"] == "2000.00" and total["cost_per_lead"] == "666.67" and total["conversion"] == 15.79
    assert total["roi"] == 150.0 and data["currency"] == "RUB"
    vk = next(row for row in data["rows"] if row["source"] == "vk")
    assert vk["leads"] == 0 and vk["cost"] == "200.00" and vk["cost_per_lead"] is None


def test_the_api_summary_declares_its_400_for_a_range_that_ends_before_it_starts(client, shop):
    _row, key = api_key_create(project=shop.project, name="BI")
    answer = client.get(
        "/api/v1/summary", {"date_from": "2025-07-02", "date_to": "2025-07-01"}, HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    assert answer.status_code == 400 and answer.json()["code"] == "invalid"
    schema = client.get("/api/schema/?format=json").json()
    responses = schema["paths"]["/api/v1/summary"]["get"]["responses"]
    assert "400" in responses and "date_from" in responses["400"]["description"]


def test_the_lists_site_filter_narrows_the_sessions_too(client, shop):
    other = Site.objects.create(project=shop.project, name="Second site", original_email="info@second.test")
    person = Visitor.objects.create(site=other, vid="elsewhere", created_at=DAY1, last_seen_at=DAY1)
    Session.objects.create(visitor=person, started_at=DAY1, last_seen_at=DAY1, channel=Channel.DIRECT)
    query = {"project": shop.project.pk, **PERIOD, "group": "channel", "format": "csv"}
    every = list(
        csv.reader(io.StringIO(b"".join(client.get("/journal/reports/", query).streaming_content).decode("utf-8-sig")))
    )
    assert every[-1][1] == "20"
    one = client.get("/journal/reports/", {**query, "site": shop.site.pk})
    rows = list(csv.reader(io.StringIO(b"".join(one.streaming_content).decode("utf-8-sig"))))
    assert rows[-1][1] == "19"
