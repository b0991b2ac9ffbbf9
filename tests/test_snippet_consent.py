"""Consent mode, Global Privacy Control and the install check, in a real browser."""

import json

import pytest
from django.test import Client

from frontend_js.models import MissingBlockReport
from substitution.models import Block, Lease
from tests.factories import make_setup
from tests.test_snippet_support import (
    ORIGINAL,
    VISIBILITY_SWITCH,
    Collects,
    Watch,
    serve,
    snippet_options,
    use_blocks,
    visitor_fixture,  # noqa: F401 - the `visitor` fixture
    wait_for_address,
    wait_until,
)
from tracker.models import Session, Visitor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GPC_ON = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});"
QUEUE_CONSENT = (
    "window.emailtrack = function () { (emailtrack.q = emailtrack.q || []).push(arguments); };"
    "emailtrack('consent', true);"
)


# Counts the answers the page's scripts have read, once each is handled: the
# counter moves in a task of its own, after the reader's promise callbacks.
ANSWERS_READ = """
(() => {
  window.__answers = 0;
  const json = Response.prototype.json;
  Response.prototype.json = function () {
    return json.call(this).then((value) => {
      setTimeout(() => window.__answers++);
      return value;
    });
  };
})();
"""


class Requests:
    """Every request the page sends, in order, and a way to know that those
    sent so far were all seen (without waiting a fixed time)."""

    def __init__(self, page):
        self.page, self.urls = page, []
        page.on("request", lambda request: self.urls.append(request.url))

    def reports(self) -> list[str]:
        return [url for url in self.urls if url.endswith("/api/v1/report")]

    def settle(self):
        """The page sends a beacon of its own and it is seen: whatever the
        page sent before it (e.g. while handling the last event) is seen too."""
        count = sum(1 for url in self.urls if url.endswith("/settled"))
        self.page.evaluate("navigator.sendBeacon('/settled', '')")
        wait_until(
            lambda: sum(1 for url in self.urls if url.endswith("/settled")) > count, "the page's own beacon", self.page
        )


def storage(page) -> dict:
    return page.evaluate("Object.fromEntries(Object.entries(localStorage))")


def answered(page, collects: Collects, count: int):
    """Wait until the page sent `count` collect requests and the last was answered."""
    wait_until(lambda: len(collects.bodies) >= count, f"{count} collect requests", page)
    page.wait_for_load_state("networkidle")


def test_in_consent_mode_nothing_is_kept_until_the_page_gives_consent(live_server, page_server, visitor):
    setup = make_setup()
    snippet_options(setup.site, consent_mode=True)
    url = serve(page_server, live_server, setup.site, "consent.html")
    page = visitor().new_page()
    watch = Watch(page)
    collects = Collects(page)
    page.goto(url)
    answered(page, collects, 1)

    assert collects.bodies[0]["consent"] is False
    assert "vid" not in collects.bodies[0] and "ga" not in collects.bodies[0]
    assert page.locator("#text").text_content() == "Write to info@shop.test"
    assert storage(page) == {}
    assert (Visitor.objects.count(), Session.objects.count(), Lease.objects.count()) == (0, 0, 0)

    page.evaluate("emailtrack('consent', true)")
    address = wait_for_address(page)
    assert collects.bodies[-1]["consent"] is True
    lease = Lease.objects.get(address__email=address, released_at__isnull=True)
    assert Session.objects.filter(visitor=lease.visitor).count() == 1
    key = f"emailtrack_{setup.site.site_key}"
    assert list(storage(page)) == [key]

    # Remembered on the next page, until withdrawn.
    page.reload()
    assert wait_for_address(page) == address
    answered(page, collects, 3)
    assert collects.bodies[2]["consent"] is True
    assert collects.bodies[2]["vid"] == lease.visitor.vid

    page.evaluate("emailtrack('consent', false)")
    page.wait_for_function("document.getElementById('text').textContent === 'Write to info@shop.test'")
    assert page.locator("#link").get_attribute("href") == "mailto:info@shop.test"
    assert storage(page) == {}
    page.reload()
    answered(page, collects, 5)
    assert collects.bodies[-1]["consent"] is False and "vid" not in collects.bodies[-1]
    assert page.locator("#text").text_content() == "Write to info@shop.test"
    assert Visitor.objects.count() == 1
    assert watch.problems() == []


def test_consent_given_before_the_script_loads_counts_from_its_first_request(live_server, page_server, visitor):
    setup = make_setup()
    snippet_options(setup.site, consent_mode=True)
    page = visitor().new_page()
    page.add_init_script(QUEUE_CONSENT)
    collects = Collects(page)
    page.goto(serve(page_server, live_server, setup.site, "consent.html"))
    address = wait_for_address(page)
    page.wait_for_load_state("networkidle")

    assert [body["consent"] for body in collects.bodies] == [True]  # one page view, with consent
    assert Lease.objects.get(released_at__isnull=True).address.email == address


def test_a_late_answer_to_an_earlier_request_never_undoes_a_newer_one(live_server, page_server, visitor):
    setup = make_setup()
    snippet_options(setup.site, consent_mode=True)
    page = visitor().new_page()
    page.add_init_script(ANSWERS_READ)
    first = []

    def hold_the_first(route):
        if first:
            route.continue_()
        else:
            first.append(route)

    page.route("**/api/v1/collect", hold_the_first)
    page.goto(serve(page_server, live_server, setup.site, "consent.html"))
    wait_until(lambda: first, "the page view without consent", page)
    page.evaluate("emailtrack('consent', true)")
    address = wait_for_address(page)

    page.wait_for_function("window.__answers === 1")
    first[0].continue_()  # the answer without consent (no address) arrives last
    page.wait_for_function("window.__answers === 2")  # and has been handled
    assert page.locator("#text").text_content() == f"Write to {address}"
    assert json.loads(page.evaluate(f"localStorage.getItem('emailtrack_{setup.site.site_key}')"))["vid"]


@pytest.mark.parametrize("consent_mode", [True, False], ids=["consent-mode", "no-consent-mode"])
def test_a_browser_sending_global_privacy_control_is_never_tracked(live_server, page_server, visitor, consent_mode):
    setup = make_setup()
    snippet_options(setup.site, consent_mode=consent_mode, honour_gpc=True)
    url = serve(page_server, live_server, setup.site, "consent.html")
    page = visitor().new_page()
    page.add_init_script(GPC_ON)
    collects = Collects(page)
    requests = Requests(page)
    page.goto(url)
    answered(page, collects, 1)
    page.evaluate("emailtrack('consent', true)")  # ignored: the browser said no
    requests.settle()

    assert [body["consent"] for body in collects.bodies] == [False]
    assert page.locator("#text").text_content() == "Write to info@shop.test"
    assert storage(page) == {}
    assert Visitor.objects.count() == 0

    # Without the signal the same site tracks (once the page consents, in consent mode).
    other = visitor().new_page()
    other.goto(url)
    if consent_mode:
        other.evaluate("emailtrack('consent', true)")
    assert wait_for_address(other) != ORIGINAL
    assert Visitor.objects.count() == 1


def test_the_install_check_reports_once_a_page_where_a_blocks_address_is_missing(live_server, page_server, visitor):
    setup = make_setup()
    snippet_options(setup.site, install_check=True)
    found, missing = use_blocks(setup, (Block.Kind.ID, "contact"), (Block.Kind.ID, "nowhere"))
    url = serve(page_server, live_server, setup.site, "blocks.html")
    page = visitor().new_page()
    page.add_init_script(VISIBILITY_SWITCH)
    page.clock.install()
    requests = Requests(page)
    page.goto(url + "?utm_source=mail&gclid=abc#prices")
    wait_for_address(page, "#contact")
    page.clock.run_for(120_000)  # two minutes of reading, every timer of them run
    requests.settle()
    assert requests.reports() == []  # not while the visitor reads the page

    page.evaluate("__setHidden(true)")  # the visitor leaves or switches away
    wait_until(lambda: MissingBlockReport.objects.exists(), "the install check's report", page, timeout=15)
    report = MissingBlockReport.objects.get()
    assert (report.site_id, report.block_id) == (setup.site.pk, missing.pk)
    assert report.page_url == url  # without its query string and fragment
    assert report.reports == 1
    assert not MissingBlockReport.objects.filter(block=found).exists()
    page.evaluate("__setHidden(false)")
    page.evaluate("__setHidden(true)")
    requests.settle()
    assert len(requests.reports()) == 1  # once a page


def test_without_the_install_check_the_page_reports_nothing(live_server, page_server, visitor):
    setup = make_setup()
    use_blocks(setup, (Block.Kind.ID, "nowhere"))
    page = visitor().new_page()
    page.add_init_script(VISIBILITY_SWITCH)
    collects = Collects(page)
    requests = Requests(page)
    page.goto(serve(page_server, live_server, setup.site, "blocks.html"))
    wait_until(lambda: collects.bodies, "the page view", page)
    page.wait_for_load_state("networkidle")
    page.evaluate("__setHidden(true)")  # where the install check would report
    requests.settle()
    page.evaluate("__setHidden(false)")  # the snippet follows the page's visibility: it beats at once
    wait_until(lambda: collects.heartbeats() == 1, "the heartbeat on coming back", page)

    assert requests.reports() == []
    assert not MissingBlockReport.objects.exists()
    served = Client().get(f"/s/{setup.site.site_key}.js").content.decode()
    assert "/api/v1/report" not in served and "sendBeacon" not in served  # not even the code for it
