"""The snippet over time, in a real browser: the cached assignment and its
expiry, no flash of the original, the heartbeat, a server that fails, a strict
Content-Security-Policy, and anti-flicker."""

import json
import time

import pytest
from django.utils import timezone

from substitution import activity
from substitution.models import Lease
from substitution.services import lease_acquire
from tests.factories import make_setup
from tests.test_snippet_support import (
    FRAME_RECORDER,
    ORIGINAL,
    VISIBILITY_SWITCH,
    WRITE_RECORDER,
    Collects,
    Held,
    Watch,
    live_lease,
    serve,
    snippet_options,
    visitor_fixture,  # noqa: F401 - the `visitor` fixture
    wait_for_address,
    wait_until,
)
from tracker.models import Visitor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STALE = "stale+zz@shop.test"


# Counts, in the page, the heartbeats the snippet sends (read at once, with
# no request event to wait for).
BEAT_COUNTER = """
(() => {
  window.__beats = 0;
  const send = window.fetch;
  window.fetch = function (url, options) {
    if (options && String(options.body).includes('"hb":true')) window.__beats++;
    return send.apply(this, arguments);
  };
})();
"""

# The page's own hook on the snippet: `ready` is called once the snippet has
# decided what to show (the server's answer, or its failure).
READY_HOOK = """
window.emailtrack = function () { (emailtrack.q = emailtrack.q || []).push(arguments); };
emailtrack("ready", function (shown) { window.__shown = shown; });
"""


class InFlight:
    """The page's collect requests not yet answered (or failed)."""

    def __init__(self, page):
        self.page, self.open = page, set()
        page.on("request", lambda request: self._track(request, self.open.add))
        page.on("requestfinished", lambda request: self._track(request, self.open.discard))
        page.on("requestfailed", lambda request: self._track(request, self.open.discard))

    @staticmethod
    def _track(request, change):
        if request.url.endswith("/api/v1/collect"):
            change(request)

    def wait_until_none(self):
        wait_until(lambda: not self.open, "the collect requests on their way to be answered", self.page)


def cached(page, site) -> dict:
    return json.loads(page.evaluate(f"localStorage.getItem('emailtrack_{site.site_key}')") or "null")


def frames_of(page, element_id: str) -> list[dict]:
    return [frame for frame in page.evaluate("window.__frames") if frame["id"] == element_id]


def test_a_returning_visitor_never_sees_the_original_address(live_server, page_server, visitor):
    setup = make_setup()
    url = serve(page_server, live_server, setup.site, "noflash.html")
    context = visitor()
    context.route(
        "**/slow.js", lambda route: route.fulfill(body="window.slowRan = true;", content_type="text/javascript")
    )
    first = context.new_page()
    first.goto(url)
    address = wait_for_address(first, "#contact")
    first.close()
    context.unroute("**/slow.js")

    # The next page: the server is slow, and the parser stops halfway (slow.js),
    # so the browser paints the top of the page long before either arrives.
    page = context.new_page()
    page.add_init_script(FRAME_RECORDER % '["contact", "below"]')
    collect = Held(page, "**/api/v1/collect")
    slow = Held(page, "**/slow.js")
    page.goto(url, wait_until="commit")
    collect.wait()
    slow.wait()
    page.wait_for_function("window.__frames.filter((f) => f.id === 'contact').length >= 10")
    assert frames_of(page, "below") == []  # still parsing: the frames were painted mid-page
    slow.release(body="window.slowRan = true;", content_type="text/javascript")
    page.wait_for_function("window.__frames.some((f) => f.id === 'below')")
    collect.release()
    page.wait_for_load_state("load")

    assert ORIGINAL in page_server.pages["/noflash"]
    texts = {frame["text"] for frame in page.evaluate("window.__frames")}
    assert texts == {f"Write to {address}", f"Or to {address}"}
    assert wait_for_address(page, "#below") == address


def test_an_expired_cached_lease_is_never_shown_and_the_server_decides(live_server, page_server, visitor):
    setup = make_setup()
    url = serve(page_server, live_server, setup.site, "simple.html")
    context = visitor()
    first = context.new_page()
    first.goto(url)
    address = wait_for_address(first)
    saved = cached(first, setup.site)
    # The cache now holds another address, whose lease expired a minute ago.
    saved.update(exp=int(time.time()) - 60, subs=[{"block": setup.block.pk, "email": STALE}])
    first.evaluate(
        "([key, value]) => localStorage.setItem(key, value)", [f"emailtrack_{setup.site.site_key}", json.dumps(saved)]
    )
    first.close()

    page = context.new_page()
    page.add_init_script(FRAME_RECORDER % '["text"]')
    page.add_init_script(WRITE_RECORDER)
    collects = Collects(page)
    collect = Held(page, "**/api/v1/collect")
    page.goto(url)
    collect.wait()
    page.wait_for_function("window.__frames.length >= 10")
    assert {frame["text"] for frame in page.evaluate("window.__frames")} == {"Write to info@shop.test"}
    collect.release()

    assert wait_for_address(page) == address  # the server still holds the visitor's lease
    assert collects.bodies[0]["vid"] == saved["vid"]  # and it is the same visitor
    assert not [value for value in page.evaluate("window.__writes") if STALE in value]  # not even for an instant


def test_an_error_answer_keeps_the_visitors_cached_id_and_address(live_server, page_server, visitor):
    setup = make_setup()
    url = serve(page_server, live_server, setup.site, "simple.html")
    context = visitor()
    first = context.new_page()
    first.goto(url)
    address = wait_for_address(first)
    saved = cached(first, setup.site)
    first.close()

    page = context.new_page()
    watch = Watch(page)
    answers = Collects(page)
    page.route(
        "**/api/v1/collect",
        lambda route: route.fulfill(status=429, json={"error": "Too many requests"}, headers={"Retry-After": "60"}),
    )
    page.goto(url)
    wait_until(lambda: answers.bodies, "the snippet's request", page)
    page.wait_for_load_state("networkidle")

    assert page.locator("#text").text_content() == f"Write to {address}"  # the lease is still valid
    assert cached(page, setup.site) == saved
    assert watch.problems() == []


def test_a_cached_address_goes_back_to_the_original_at_its_expiry_without_the_servers_word(
    live_server, page_server, visitor
):
    setup = make_setup()
    url = serve(page_server, live_server, setup.site, "simple.html")
    context = visitor()
    first = context.new_page()
    first.goto(url)
    wait_for_address(first)
    saved = cached(first, setup.site)
    saved.update(exp=int(time.time()) + 600, subs=[{"block": setup.block.pk, "email": STALE}])
    first.evaluate(
        "([key, value]) => localStorage.setItem(key, value)", [f"emailtrack_{setup.site.site_key}", json.dumps(saved)]
    )
    first.close()

    # The page's clock: time runs as usual until the test moves it on.
    context.clock.install()
    page = context.new_page()
    watch = Watch(page)
    page.route("**/api/v1/collect", lambda route: route.abort("connectionrefused"))  # the server is down
    page.goto(url)
    assert page.locator("#text").text_content() == f"Write to {STALE}"  # still within the lease
    page.clock.run_for(540_000)  # nine minutes later
    assert page.locator("#text").text_content() == f"Write to {STALE}"
    page.clock.run_for(61_000)  # past the lease's expiry
    page.wait_for_function("document.getElementById('text').textContent === 'Write to info@shop.test'")
    assert page.locator("#link").get_attribute("href") == "mailto:info@shop.test?subject=Hello"
    assert page.locator("#attr").get_attribute("data-email") == ORIGINAL
    assert watch.problems() == []


def test_the_heartbeat_extends_the_lease_while_the_page_is_visible_and_stops_while_hidden(
    live_server, page_server, visitor, settings
):
    settings.HEARTBEAT_SECONDS = 1
    setup = make_setup()
    context = visitor()
    context.clock.install()
    page = context.new_page()
    page.add_init_script(VISIBILITY_SWITCH)
    page.add_init_script(BEAT_COUNTER)
    collects = Collects(page)
    in_flight = InFlight(page)
    page.goto(serve(page_server, live_server, setup.site, "simple.html"))
    lease = live_lease(wait_for_address(page))

    def expiry():
        activity.flush()  # activity written behind reaches the database
        return Lease.objects.get(pk=lease.pk).expires_at

    wait_until(lambda: collects.heartbeats() >= 1, "a heartbeat", page)
    first = expiry()
    wait_until(lambda: expiry() > first, "the next heartbeat to extend the lease", page)

    page.evaluate("__setHidden(true)")
    in_flight.wait_until_none()  # a heartbeat already on its way lands
    hidden_at, beats = expiry(), page.evaluate("window.__beats")
    page.clock.run_for(10_000)  # ten heartbeat intervals, every timer of them run
    assert page.evaluate("window.__beats") == beats
    in_flight.wait_until_none()
    assert expiry() == hidden_at

    page.evaluate("__setHidden(false)")  # back: a heartbeat at once
    wait_until(lambda: expiry() > hidden_at, "the heartbeat after the page became visible", page)
    assert collects.heartbeats() > beats


def test_a_lease_lost_meanwhile_is_replaced_everywhere_on_the_page(live_server, page_server, visitor, settings):
    settings.HEARTBEAT_SECONDS = 1
    setup = make_setup(pool_size=2)
    page = visitor().new_page()
    page.add_init_script(VISIBILITY_SWITCH)
    in_flight = InFlight(page)
    page.goto(serve(page_server, live_server, setup.site, "simple.html"))
    old = wait_for_address(page)
    ours = live_lease(old)

    # While the page is hidden its lease runs out and another visitor takes
    # the address; the pool's other address is free again by then.
    page.evaluate("__setHidden(true)")
    in_flight.wait_until_none()  # a heartbeat already on its way lands first
    activity.flush()
    now = timezone.now()
    holder = Visitor.objects.create(site=setup.site, vid="holder-0001", created_at=now, last_seen_at=now)
    other = lease_acquire(pool=setup.pool, visitor=holder, now=now)
    Lease.objects.filter(pk=ours.pk).update(expires_at=now, last_activity_at=now)
    taker = Visitor.objects.create(site=setup.site, vid="taker-0001", created_at=now, last_seen_at=now)
    assert lease_acquire(pool=setup.pool, visitor=taker, now=now).email == old
    Lease.objects.filter(pk=other.lease.pk).update(expires_at=now)
    activity.forget_visitor(ours.visitor_id)

    page.evaluate("__setHidden(false)")
    page.wait_for_function("(old) => !document.getElementById('text').textContent.includes(old)", arg=old)
    new = wait_for_address(page)
    assert new == other.email != old
    assert page.locator("#text").text_content() == f"Write to {new}"
    assert page.locator("#link").get_attribute("href") == f"mailto:{new}?subject=Hello"
    assert page.locator("#attr").get_attribute("data-email") == new
    assert old not in page.content()
    assert live_lease(new).visitor_id == ours.visitor_id


@pytest.mark.parametrize(
    "failure",
    [
        {"abort": "connectionrefused"},
        {"status": 503, "body": '{"error": "Temporarily unavailable"}', "content_type": "application/json"},
        {"status": 500, "body": "<h1>Server Error</h1>", "content_type": "text/html"},
        {"status": 200, "body": '{"subs": [', "content_type": "application/json"},
        {"hold": True},
    ],
    ids=["refused", "503", "500-html", "broken-json", "no-answer"],
)
def test_a_failing_server_leaves_the_page_its_address_and_a_clean_console(live_server, page_server, visitor, failure):
    setup = make_setup()
    page = visitor().new_page()
    page.add_init_script(READY_HOOK)
    watch = Watch(page)
    requests = Collects(page)
    if "abort" in failure:
        page.route("**/api/v1/collect", lambda route: route.abort(failure["abort"]))
    elif "hold" in failure:
        Held(page, "**/api/v1/collect")
    else:
        page.route("**/api/v1/collect", lambda route: route.fulfill(**failure))
    page.goto(serve(page_server, live_server, setup.site, "down.html"))
    page.wait_for_function("window.pageReady === true")
    wait_until(lambda: requests.bodies, "the snippet's request", page)
    if "hold" not in failure:
        # The snippet has handled the failure: the original is what it shows.
        page.wait_for_function("window.__shown !== undefined")
        assert page.evaluate("window.__shown") == {str(setup.block.pk): ORIGINAL}

    page.locator("#button").click()
    assert page.locator("#button").text_content() == "1"  # the page's own script works
    assert page.locator("#text").text_content() == "Write to info@shop.test"
    assert page.locator("#link").get_attribute("href") == "mailto:INFO@shop.test?subject=Hello"
    assert page.evaluate("typeof window.emailtrack") == "function"
    assert watch.problems() == []


def test_it_works_under_a_strict_content_security_policy(live_server, page_server, visitor):
    setup = make_setup()
    snippet_options(setup.site, anti_flicker=True)  # its hiding must pass the policy too
    page = visitor().new_page()
    page.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation', (e) => __violations.push(e.blockedURI));"
    )
    watch = Watch(page)
    page.goto(serve(page_server, live_server, setup.site, "csp.html"))
    address = wait_for_address(page)

    assert page.locator("#link").get_attribute("href") == f"mailto:{address}?subject=Hello"
    # The policy is enforced (the probe image was refused) and refused nothing else.
    assert page.evaluate("window.__violations") == ["data"]
    assert [line for line in watch.problems() if "data:image" not in line] == []


def test_anti_flicker_hides_only_the_blocks_and_never_longer_than_its_timeout(live_server, page_server, visitor):
    setup = make_setup()
    snippet_options(setup.site, anti_flicker=True, anti_flicker_timeout_ms=500)
    page = visitor().new_page()
    page.add_init_script(FRAME_RECORDER % '["text", "plain"]')
    collect = Held(page, "**/api/v1/collect")
    page.goto(serve(page_server, live_server, setup.site, "flicker.html"))
    collect.wait()
    # The server has not answered, yet the original comes back into view.
    page.wait_for_function("getComputedStyle(document.getElementById('text')).visibility === 'visible'")
    assert collect.routes  # still unanswered

    shown = frames_of(page, "text")
    assert shown[0]["visibility"] == "hidden"  # hidden from the first paint
    assert shown[-1] == {"id": "text", "text": "Write to info@shop.test", "visibility": "visible"}
    assert {frame["visibility"] for frame in frames_of(page, "plain")} == {"visible"}
    collect.release()
    address = wait_for_address(page)
    assert page.locator("#text").evaluate("(e) => getComputedStyle(e).visibility") == "visible"
    assert page.locator("#text").get_attribute("style") in (None, "")
    assert address != ORIGINAL
