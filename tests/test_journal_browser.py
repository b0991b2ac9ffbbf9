"""The journal in Chromium: the list renders, a filter narrows it to the
expected rows, the lead page shows the session, an edit saves, and the
report's numbers match the leads made in the test (by the real pipeline)."""

from datetime import timedelta

import pytest
from django.db.models import Count
from django.test import Client
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.services import ingest_raw
from tests.factories import letter_bytes, make_setup
from tests.test_journal_support import member, visit_and_write
from tracker.models import Channel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in_page(browser, live_server, user):
    """A browser page carrying the session of `user` (no password typing needed)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context.new_page()


def test_a_marketer_filters_opens_a_lead_edits_it_and_reads_the_report(live_server, browser):
    setup = make_setup(pool_size=10)
    setup.project.time_zone = "Europe/Moscow"
    setup.project.save()
    now = timezone.now()
    paid = dict(channel=Channel.PAID, source="google", utm_source="google", utm_medium="cpc", utm_campaign="spring")
    visit_and_write(setup, now - timedelta(days=3), "v-0001", subject="Paid one", **paid)
    visit_and_write(
        setup,
        now - timedelta(days=2),
        "v-0002",
        sender="Olga <olga@client.test>",
        subject="Paid two",
        landing_url="https://shop.test/bricks?utm_source=google",
        page_views=4,
        **paid,
    )
    visit_and_write(
        setup,
        now - timedelta(days=1),
        "v-0003",
        sender="Petr <petr@client.test>",
        subject="Organic one",
        channel=Channel.ORGANIC,
        source="yandex",
        keyword="bricks",
    )
    raw = letter_bytes(to="info@shop.test", sender="Anna <anna@client.test>", subject="To the main address")
    ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=now - timedelta(hours=5))
    assert Lead.objects.count() == 4

    page = signed_in_page(browser, live_server, member("mark", setup.project))
    page.goto(f"{live_server.url}/journal/")
    rows = page.locator("tr.lead")
    assert rows.count() == 4
    assert rows.first.locator(".subject").text_content() == "To the main address"

    page.select_option("select[name=channel]", "paid")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**channel=paid**")
    assert page.locator("tr.lead .subject").all_text_contents() == ["Paid two", "Paid one"]

    page.click("text=Paid two")
    page.wait_for_selector("#session")
    assert page.locator("#landing a").get_attribute("href") == "https://shop.test/bricks?utm_source=google"
    assert "campaign spring" in page.locator("#utm").text_content()
    assert page.locator("#page-views").text_content() == "4"

    page.select_option("select[name=status]", "won")
    page.fill("input[name=deal_amount]", "2500")
    page.fill("input[name=tags]", "wholesale")
    page.click("form.edit button[type=submit]")
    page.wait_for_selector("text=Lead saved.")
    won = Lead.objects.get(subject="Paid two")
    assert (won.status, str(won.deal_amount), list(won.tags.values_list("name", flat=True))) == (
        "won",
        "2500.00",
        ["wholesale"],
    )

    page.click("text=Reports")
    page.wait_for_selector("#chart svg")
    leads = Lead.objects.filter(project=setup.project)
    assert page.locator("#total-leads").text_content() == str(leads.count())
    assert page.locator("#total-amount").text_content() == "2500.00"
    for row in leads.values("channel").annotate(n=Count("id")):
        cell = page.locator(f'#channels tr[data-channel="{row["channel"]}"] td.num')
        assert cell.text_content() == str(row["n"])
    google = page.locator("#sources tr.source-row", has_text="google")
    assert google.locator("td.leads").text_content() == "2"
    assert google.locator("td.amount").text_content() == "2500.00"
    assert page.locator("#chart rect").count() == 4  # one segment per (day, channel) with leads
