# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""A tracked letter opened in a real browser (Chromium), as a mail client
shows it: one open by a person; a click lands on the link's page and is a
person's click."""

import pytest

from engagement import recording
from engagement.models import Event, EventKind, OpenState, Verdict
from tests.engagement_fixtures import empty_stream, make_project, track  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_stream")]


def test_a_letter_opened_in_chromium_is_one_human_open_and_its_click_lands_on_the_target(
    page, live_server, page_server, settings
):
    settings.ENGAGEMENT_BASE_URL = live_server.url
    page_server.pages["/landing"] = "<!doctype html><title>Price list</title><h1>Our prices</h1>"
    project, _key = make_project()
    html = (
        "<!doctype html><html><body><p>Hello Anna!</p>"
        f'<p><a id="prices" href="{page_server.url}/landing?utm_source=letter">See the prices</a></p>'
        '<p><a href="https://shop.test/unsubscribe" data-emailtrack-skip>Unsubscribe</a></p></body></html>'
    )
    copy = track(project, html=html).copies[0]
    page_server.pages["/letter"] = copy.html

    page.goto(page_server.url + "/letter")
    page.wait_for_load_state("networkidle")
    recording.drain()
    [open_event] = Event.objects.filter(recipient=copy.recipient)
    assert (open_event.kind, open_event.verdict, open_event.inferred) == (EventKind.OPEN, Verdict.HUMAN, False)
    assert open_event.device_type == "desktop"

    page.click("#prices")
    page.wait_for_url(page_server.url + "/landing?utm_source=letter")
    assert page.text_content("h1") == "Our prices"
    recording.drain()
    kinds = list(Event.objects.filter(recipient=copy.recipient).order_by("at").values_list("kind", "verdict"))
    assert kinds == [(EventKind.OPEN, Verdict.HUMAN), (EventKind.CLICK, Verdict.HUMAN)]
    copy.recipient.refresh_from_db()
    assert copy.recipient.open_state == OpenState.PERSON
