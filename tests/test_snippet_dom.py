"""The snippet on pages that change under it, in a real browser: attributes
changed on elements already there, and shadow roots (web components, chat
widgets), made before the snippet ran or after."""

import pytest

from tests.factories import make_setup
from tests.test_snippet_browser import EVALUATE_SPY
from tests.test_snippet_support import (
    ORIGINAL,
    Watch,
    serve,
    snippet_options,
    visitor_fixture,  # noqa: F401 - the `visitor` fixture
    wait_for_address,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The text (or an attribute) of an element inside open shadow roots, found by a
# path of ids: each id but the last is a shadow host.
IN_SHADOW = """([path, attribute]) => {
  let node = document;
  for (const id of path.slice(0, -1)) node = (node.getElementById ? node : node).querySelector('#' + id).shadowRoot;
  const el = node.querySelector('#' + path[path.length - 1]);
  return attribute ? el.getAttribute(attribute) : el.textContent;
}"""


def in_shadow(page, *path, attribute=None):
    return page.evaluate(IN_SHADOW, [list(path), attribute])


def test_an_attribute_a_script_sets_later_on_an_element_gets_the_address(live_server, page_server, visitor):
    setup = make_setup()
    page = visitor().new_page()
    page.add_init_script(EVALUATE_SPY)
    watch = Watch(page)
    page.goto(serve(page_server, live_server, setup.site, "attributes.html"))
    address = wait_for_address(page)
    page.wait_for_function("window.pageDone === true", timeout=10_000)
    page.wait_for_function(
        "(a) => document.getElementById('link').getAttribute('href').includes(a)", arg=address, timeout=5_000
    )

    # Matched whatever its case, the rest of the link kept.
    assert page.locator("#link").get_attribute("href") == f"mailto:{address}?subject=Later"
    assert page.locator("#chat").get_attribute("data-email") == address
    assert page.locator("#chat").get_attribute("title") == f"Mail {address}"
    assert page.locator("#field").get_attribute("value") == ORIGINAL  # a form field is the visitor's
    # Only the changed attributes were looked at: the page was searched at
    # start and when the address came, never again.
    assert page.evaluate("window.__searched") == ["#document", "#document"]
    assert watch.problems() == []


def test_addresses_inside_open_shadow_roots_are_replaced_whenever_the_roots_were_made(
    live_server, page_server, visitor
):
    setup = make_setup()
    snippet_options(setup.site, shadow_dom=True)
    page = visitor().new_page()
    watch = Watch(page)
    page.goto(serve(page_server, live_server, setup.site, "shadow.html"))
    address = wait_for_address(page)
    page.wait_for_function("window.pageDone === true", timeout=10_000)
    page.wait_for_function(
        "(a) => { const r = document.getElementById('chat').shadowRoot; return r.textContent.includes(a); }",
        arg=address,
        timeout=5_000,
    )

    # Made before the snippet ran: by script, and declared in the HTML.
    assert in_shadow(page, "early", "in-early") == f"Early: {address}"
    assert in_shadow(page, "declared", "in-declared") == f"Declared: {address}"
    # Attached later, by a component defined after load (its element upgraded).
    assert in_shadow(page, "card", "in-card") == f"Card: {address}"
    assert in_shadow(page, "card", "card-link", attribute="href") == f"mailto:{address}?subject=Card"
    assert in_shadow(page, "card", "card-field", attribute="value") == ORIGINAL  # a form field
    # A chat widget's text right inside its root, and a component nested in it.
    assert page.evaluate("document.getElementById('chat').shadowRoot.firstChild.nodeValue") == f"Chat: {address}"
    assert (
        page.evaluate("document.getElementById('chat').shadowRoot.querySelector('span').shadowRoot.textContent")
        == f"Nested: {address}"
    )
    # Closed roots are left alone; the page's own attachShadow works as before.
    assert page.evaluate("closedRoot.textContent") == ORIGINAL
    assert page.evaluate("laterClosed.textContent") == f"Closed: {ORIGINAL}"
    assert page.evaluate("window.attachError") == "NotSupportedError"
    assert watch.problems() == []


def test_without_the_shadow_dom_setting_shadow_roots_are_left_alone(live_server, page_server, visitor):
    setup = make_setup()
    page = visitor().new_page()
    watch = Watch(page)
    page.goto(serve(page_server, live_server, setup.site, "shadow.html"))
    address = wait_for_address(page)
    page.wait_for_function("window.pageDone === true", timeout=10_000)
    page.wait_for_timeout(300)

    assert address != ORIGINAL
    assert in_shadow(page, "early", "in-early") == f"Early: {ORIGINAL}"
    assert in_shadow(page, "card", "in-card") == f"Card: {ORIGINAL}"
    assert page.evaluate("Element.prototype.attachShadow.toString()").endswith("{ [native code] }")
    assert watch.problems() == []
