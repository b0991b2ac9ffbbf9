"""The demo shows outgoing tracking in a minute: the page sends a tracked
letter to yourself, the demo inbox shows it as a mail client would (a person's
open), its link goes through the signed redirect to the demo page (a
person's click), and the journal's Sent letters shows both."""

import pytest
from django.test import Client

from demo import services as demo
from engagement import recording, selectors
from engagement.models import Message
from tests.engagement_fixtures import empty_stream  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_stream")]


@pytest.fixture
def demo_mode(settings, live_server):
    settings.DEBUG = settings.DEMO = True
    settings.ENGAGEMENT_BASE_URL = live_server.url
    site, _password = demo.demo_setup()
    return site


def test_the_demo_sends_a_tracked_letter_that_is_opened_and_clicked_by_a_person(browser, live_server, demo_mode):
    page = browser.new_context().new_page()
    page.goto(f"{live_server.url}/demo/")
    page.fill("#sender", "me@example.net")
    page.click("#send-tracked")
    page.wait_for_url("**/demo/inbox/")
    letter = page.frame_locator("#letter")
    price_link = letter.get_by_role("link", name="price list")
    price_link.wait_for()
    page.wait_for_load_state("networkidle")  # the pixel has been fetched
    price_link.click()
    page.wait_for_url("**/demo/?utm_source=price_letter**")
    recording.drain()
    message = Message.objects.get()
    assert (message.subject, message.campaign) == ("Our price list", "demo")
    assert list(message.recipients.values_list("email", flat=True)) == ["me@example.net"]
    figures = selectors.totals([message.pk])[message.pk]
    assert (figures["opens"]["human"], figures["clicks"]["human"]) == (1, 1)
    assert figures["opens"]["machine"] == figures["clicks"]["machine"] == 0
    admin = Client()
    admin.force_login(demo_mode.project.members.get())
    journal = admin.get(f"/journal/sent/{message.pk}/").content.decode()
    assert 'id="opens-human">1' in journal and 'data-state="person"' in journal


def test_the_inbox_without_a_letter_sends_you_back_to_the_demo(client, demo_mode):
    assert client.get("/demo/inbox/")["Location"] == "/demo/"
