"""The end-to-end report in Chromium: the table's figures, the charts of
conversion and cost per lead by source (a line per source, each point
titled with its day and value), and a page that fits 1280 px."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.test import Client

from attribution.models import Lead
from costs.models import Cost
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member
from tracker.models import Channel, Session, Visitor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DAY1 = date(2025, 7, 1)


def at(day: date, hour: int = 10):
    return datetime.combine(day, time(hour), tzinfo=UTC)


def test_the_report_shows_the_figures_and_readable_charts_by_source(live_server, browser):
    setup = make_setup()
    for n, (day, count) in enumerate([(DAY1, 4), (DAY1 + timedelta(days=1), 5)]):
        for i in range(count):
            person = Visitor.objects.create(site=setup.site, vid=f"y{n}-{i}", created_at=at(day), last_seen_at=at(day))
            Session.objects.create(
                visitor=person,
                started_at=at(day),
                last_seen_at=at(day),
                channel=Channel.PAID,
                source="yandex",
                utm_medium="cpc",
                utm_campaign="autumn",
            )
    make_lead(setup.project, at=at(DAY1, 11), channel=Channel.PAID, source="yandex", medium="cpc", campaign="autumn")
    make_lead(
        setup.project,
        at=at(DAY1 + timedelta(days=1), 11),
        channel=Channel.PAID,
        source="yandex",
        medium="cpc",
        campaign="autumn",
        status=Lead.Status.WON,
        deal_amount=Decimal("900"),
    )
    Cost.objects.create(project=setup.project, day=DAY1, source="yandex", medium="cpc", campaign="autumn", amount=100)
    Cost.objects.create(
        project=setup.project,
        day=DAY1 + timedelta(days=1),
        source="yandex",
        medium="cpc",
        campaign="autumn",
        amount=300,
    )
    client = Client()
    client.force_login(member("mark", setup.project))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.goto(
        f"{live_server.url}/journal/reports/?project={setup.project.pk}&date_from=2025-07-01&date_to=2025-07-02"
        "&group=source"
    )
    row = page.locator("#funnel tbody tr").first
    cells = row.locator("td").all_inner_texts()
    # 9 sessions, 2 leads (22.2%), 1 deal of 900, cost 400: 200 a lead, 400 a deal, ROI 125%
    assert cells[:12] == [
        "yandex",
        "cpc",
        "9",
        "2",
        "2",
        "22.2%",
        "1",
        "900.00",
        "400.00",
        "200.00",
        "400.00",
        "125.0%",
    ]
    conversion = page.locator("#conversion-chart")
    assert conversion.locator("polyline.source-line").count() == 1
    assert conversion.locator(".legend").inner_text().strip() == "yandex"
    titles = conversion.locator("circle title").all_text_contents()
    assert titles == ["2025-07-01 · yandex: 25.0%", "2025-07-02 · yandex: 20.0%"]
    per_lead = page.locator("#cost-per-lead-chart circle title").all_text_contents()
    assert per_lead == ["2025-07-01 · yandex: 100.00", "2025-07-02 · yandex: 300.00"]
    assert page.locator("#conversion-chart svg").bounding_box()["width"] > 300  # drawn, not collapsed
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    context.close()
