"""The journal in Chromium, in Russian and in English: every page fits a
1280×800 window without sideways scrolling (a 500-character subject without
spaces included), the source columns stay in view, and on a phone (390 px)
the list becomes cards. Screenshots are kept in test-results/i18n/."""

from pathlib import Path

import pytest
from django.test import Client

from attribution.models import MatchKind
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member
from tracker.models import Channel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(__file__).resolve().parent.parent / "test-results" / "i18n"
LONG_SUBJECT = "Заявка" * 83 + "ОК"  # 500 characters, no spaces
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def page_for(browser, live_server, user, language, viewport):
    client = Client()
    client.force_login(user)
    context = browser.new_context(locale=language, viewport=viewport)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context.new_page()


def sideways(page) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


@pytest.fixture
def journal(live_server):
    setup = make_setup(name="Магазин")
    setup.project.time_zone = "Europe/Moscow"
    setup.project.save()
    make_lead(
        setup.project,
        subject=LONG_SUBJECT,
        sender_email="a.very.long.sender.address.without.breaks@subdomain.client-company.example",
        sender_name="Константин Константинопольский-Длиннофамильный",
        channel=Channel.PAID,
        source="yandex_direct_search_network",
        campaign="autumn_sale_moscow_and_region_2026",
        keyword="купить кирпич облицовочный недорого",
        match_kind=MatchKind.REUSED_SINCE,
        tags=("опт", "повторный заказ"),
        deal_amount="1234567.89",
    )
    for n in range(5):
        make_lead(setup.project, subject=f"Прайс-лист {n}", source="google", channel=Channel.ORGANIC, minutes_ago=n)
    return setup


@pytest.mark.parametrize("language", ["ru", "en"])
def test_every_journal_page_fits_1280_pixels_with_the_source_columns_in_view(browser, live_server, journal, language):
    SHOTS.mkdir(parents=True, exist_ok=True)
    user = member(f"mark-{language}", journal.project)
    page = page_for(browser, live_server, user, language, WIDE)
    lead = journal.project.leads.get(subject=LONG_SUBJECT)
    for name, url in (
        ("list", "/journal/"),
        ("lead", f"/journal/leads/{lead.pk}/"),
        ("report", "/journal/reports/"),
    ):
        page.goto(live_server.url + url)
        assert page.locator("html").get_attribute("lang") == language
        page.screenshot(path=str(SHOTS / f"{name}-{language}-1280.png"), full_page=True)
        assert sideways(page) <= 0, f"{url} in {language} scrolls sideways by {sideways(page)} px"
    page.goto(live_server.url + "/journal/")
    long_row = page.locator("tr.lead", has=page.locator(f'a[title="{LONG_SUBJECT}"]'))
    source = long_row.locator("td.source").bounding_box()
    amount = long_row.locator("td.amount").bounding_box()
    assert source["x"] + source["width"] <= WIDE["width"] and source["width"] >= 100
    assert amount["x"] + amount["width"] <= WIDE["width"]
    assert long_row.locator("td.subject a").get_attribute("title") == LONG_SUBJECT  # the whole subject on hover
    subject = long_row.locator("td.subject a").bounding_box()
    assert subject["height"] < 30  # shortened to one line, not a column of broken text


@pytest.mark.parametrize("language", ["ru", "en"])
def test_on_a_phone_the_list_becomes_readable_cards(browser, live_server, journal, language):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = page_for(browser, live_server, member(f"phone-{language}", journal.project), language, PHONE)
    page.goto(live_server.url + "/journal/")
    page.screenshot(path=str(SHOTS / f"list-{language}-390.png"), full_page=True)
    assert sideways(page) <= 0
    assert page.locator("#leads thead").evaluate("e => getComputedStyle(e).display") == "none"
    card = page.locator("tr.lead").first
    assert card.evaluate("e => getComputedStyle(e).display") == "block"
    label = card.locator("td.source").evaluate("e => getComputedStyle(e, '::before').content")
    assert label.strip('"') in ("Источник / кампания / ключевое слово", "Source / campaign / keyword")
    assert card.bounding_box()["width"] <= PHONE["width"]
