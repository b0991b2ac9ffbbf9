"""Helpers shared by the snippet's tests: fixture pages, a visitor's browser,
held requests. This module holds no tests."""

import json
import re
import time
from pathlib import Path

import pytest

from frontend_js.models import SnippetSettings
from substitution.models import Block, Lease

PAGES = Path(__file__).with_name("pages")
ORIGINAL = "info@shop.test"
ADDRESS_RE = re.compile(r"[a-z0-9.+_-]+@shop\.test", re.I)
# A visitor's browser. Headless Chromium calls itself HeadlessChrome, which the
# collect endpoint counts as a bot (shown the original address, no lease).
VISITOR_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"

# Lets a test hide and show the page: headless Chromium keeps every page visible.
VISIBILITY_SWITCH = """
(() => {
  let hidden = false;
  Object.defineProperty(Document.prototype, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get: () => (hidden ? "hidden" : "visible"),
  });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""

# Records, on every animation frame (just before each paint), the text of the
# elements with the given ids, from the first frame each exists.
FRAME_RECORDER = """
(() => {
  window.__frames = [];
  const ids = %s;
  const record = () => {
    for (const id of ids) {
      const el = document.getElementById(id);
      if (el) {
        window.__frames.push({id, text: el.textContent, visibility: getComputedStyle(el).visibility});
      }
    }
    requestAnimationFrame(record);
  };
  requestAnimationFrame(record);
})();
"""

# Records every text or attribute value written into the page (by anyone),
# so a value shown for less than a frame is caught too.
WRITE_RECORDER = """
(() => {
  window.__writes = [];
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") window.__writes.push(r.target.getAttribute(r.attributeName) || "");
      else if (r.type === "characterData") window.__writes.push(r.target.nodeValue);
      else for (const n of r.addedNodes) window.__writes.push(n.textContent || "");
    }
  }).observe(document, {childList: true, subtree: true, characterData: true, attributes: true});
})();
"""


def page_html(name: str, *, live: str, key: str, pages: str = "") -> str:
    html = (PAGES / name).read_text()
    return html.replace("{{live}}", live).replace("{{key}}", key).replace("{{pages}}", pages)


def serve(page_server, live_server, site, name: str, path: str | None = None) -> str:
    """Put tests/pages/<name> on the customer's origin; returns its URL."""
    path = path or "/" + name.removesuffix(".html")
    page_server.pages[path] = page_html(name, live=live_server.url, key=site.site_key, pages=page_server.url)
    return page_server.url + path


@pytest.fixture(name="visitor")
def visitor_fixture(browser):
    """visitor() is a new browser profile: a new visitor. All are closed after
    the test, so no page of it keeps calling the server during the next one.
    (Import `visitor_fixture` into a test module to use the `visitor` fixture.)"""
    contexts = []

    def new(**options):
        context = browser.new_context(user_agent=VISITOR_UA, **options)
        contexts.append(context)
        return context

    yield new
    for context in contexts:
        context.close()


class Watch:
    """What the page reports: uncaught errors and console messages."""

    def __init__(self, page):
        self.errors, self.console = [], []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", lambda message: self.console.append((message.type, message.text)))

    def problems(self) -> list[str]:
        """Errors and console output, except the browser's own line for a
        request that failed at the network level (which no script can hide)."""
        noise = ("Failed to load resource",)
        return self.errors + [f"{kind}: {text}" for kind, text in self.console if not text.startswith(noise)]


class Collects:
    """The collect requests a page sends, as the JSON bodies the server gets."""

    def __init__(self, page):
        self.bodies = []
        page.on("request", self._seen)

    def _seen(self, request):
        if request.method == "POST" and request.url.endswith("/api/v1/collect"):
            self.bodies.append(json.loads(request.post_data or "{}"))

    def heartbeats(self) -> int:
        return sum(1 for body in self.bodies if body.get("hb"))


class Held:
    """Requests to `pattern` wait until the test releases them (a slow server)."""

    def __init__(self, page, pattern: str):
        self.routes, self.page, self.pattern, self.released = [], page, pattern, False
        page.route(pattern, self._hold)

    def _hold(self, route):
        if self.released:
            route.continue_()
        else:
            self.routes.append(route)

    def wait(self, count: int = 1, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while len(self.routes) < count:
            assert time.monotonic() < deadline, f"no request to {self.pattern}"
            self.page.wait_for_timeout(20)

    def release(self, **fulfill):
        """Let them through (or answer them with `fulfill`); later ones pass at once."""
        self.released = True
        for route in self.routes:
            if fulfill:
                route.fulfill(**fulfill)
            else:
                route.continue_()
        self.routes.clear()


def wait_until(check, what: str, page=None, timeout: float = 10.0):
    """Poll the database (or anything) until `check()` holds. With a page, wait
    through Playwright, so the page's events (requests seen) keep arriving."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if page is not None:
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)


def wait_for_address(page, selector: str = "#text", timeout: float = 10_000) -> str:
    """The substitute address the element shows, once the original is gone."""
    page.wait_for_function(
        "([s, original]) => { const e = document.querySelector(s);"
        " return e && !e.textContent.toLowerCase().includes(original) && e.textContent.includes('@'); }",
        arg=[selector, ORIGINAL],
        timeout=timeout,
    )
    found = ADDRESS_RE.search(page.locator(selector).text_content())
    assert found, page.locator(selector).text_content()
    return found.group(0)


def snippet_options(site, **options) -> SnippetSettings:
    return SnippetSettings.objects.update_or_create(site=site, defaults=options)[0]


def use_blocks(setup, *specs) -> list[Block]:
    """The rule's blocks become these (kind, selector) pairs instead of "find in the page"."""
    blocks = [
        Block.objects.create(project=setup.project, name=f"{kind} {selector}", kind=kind, selector=selector)
        for kind, selector in specs
    ]
    setup.rule.blocks.set(blocks)
    return blocks


def live_lease(address: str) -> Lease:
    return Lease.objects.select_related("visitor").get(address__email=address, released_at__isnull=True)
