"""The snippet in a real browser (Chromium): what it replaces and where, on
content present at load and added later, for one visitor or several."""

import pytest

from substitution.models import Address, Block, Lease
from tests.factories import make_setup
from tests.test_snippet_support import (
    ORIGINAL,
    Watch,
    live_lease,
    serve,
    use_blocks,
    visitor_fixture,  # noqa: F401 - the `visitor` fixture
    wait_for_address,
)
from tracker.models import Visitor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_replaces_the_address_in_text_and_attributes_but_not_in_code_fields_or_ignored_elements(
    live_server, page_server, visitor
):
    setup = make_setup()
    page = visitor().new_page()
    watch = Watch(page)
    page.goto(serve(page_server, live_server, setup.site, "plain.html"))
    address = wait_for_address(page)

    assert live_lease(address).visitor.site_id == setup.site.pk
    assert address in set(Address.objects.filter(pool=setup.pool).values_list("email", flat=True))
    text = page.locator
    assert text("#text").text_content() == f"Write to {address} today."
    assert text("#upper").text_content() == f"Or to {address}, in capitals."
    assert text("#twice").text_content() == f"{address},{address} and ({address})."
    # Other addresses that merely contain the original are left alone.
    assert (
        text("#others").text_content() == "sales.info@shop.test, info@shop.test.ru, xinfo@shop.test, info@shop.testing"
    )
    assert text("#attrs").get_attribute("title") == f"Mail {address}"
    assert text("#attrs").get_attribute("data-email") == address
    # Marked elements, script and style contents, form fields, editable areas.
    assert text("#ignored").text_content() == "Billing only: info@shop.test"
    assert text("#code").text_content() == 'var shopEmail = "info@shop.test";'
    assert page.evaluate("shopEmail") == ORIGINAL
    assert 'content: "info@shop.test"' in text("#css").text_content()
    assert text("#field").input_value() == ORIGINAL
    assert text("#field").get_attribute("value") == ORIGINAL
    assert text("#area").input_value() == ORIGINAL
    assert text("#editor").text_content() == "Draft to info@shop.test"

    # What the visitor types stays as typed, in a field or an editable area.
    text("#field").fill("copy of info@shop.test")
    text("#editor").click()
    page.keyboard.press("End")
    page.keyboard.type(" and info@shop.test")
    page.wait_for_timeout(200)  # let any mutation callback run
    assert text("#field").input_value() == "copy of info@shop.test"
    assert text("#editor").text_content() == "Draft to info@shop.test and info@shop.test"
    assert watch.problems() == []


def test_mailto_links_get_the_address_and_keep_their_subject_cc_and_body(live_server, page_server, visitor):
    setup = make_setup()
    page = visitor().new_page()
    page.goto(serve(page_server, live_server, setup.site, "mailto.html"))
    address = wait_for_address(page, "#encoded")

    href = lambda selector: page.locator(selector).get_attribute("href")  # noqa: E731
    # Matched whatever its case; the rest of the link is kept as it was.
    assert href("#full") == f"mailto:{address}?subject=Order%20%2342&cc=boss@shop.test&body=Hello"
    assert href("#as-cc") == f"mailto:boss@shop.test?cc={address}"
    assert href("#encoded") == f"mailto:{address}?subject=%D0%97%D0%B0%D0%BA%D0%B0%D0%B7"
    assert href("#other") == "mailto:sales@shop.test?subject=Hi"
    assert href("#web") == "https://shop.test/contact"
    assert page.locator("#full").text_content() == "Write to us"


def test_id_class_selector_and_attribute_blocks_work_only_inside_their_elements(live_server, page_server, visitor):
    setup = make_setup()
    use_blocks(
        setup,
        (Block.Kind.ID, "contact"),
        (Block.Kind.CLASS, "email"),
        (Block.Kind.SELECTOR, "footer .mail"),
        (Block.Kind.ATTRIBUTE, "data-contact"),
    )
    page = visitor().new_page()
    page.goto(serve(page_server, live_server, setup.site, "blocks.html"))
    address = wait_for_address(page, "#contact")
    text = lambda selector: page.locator(selector).text_content()  # noqa: E731

    assert text("#contact") == f"Sales: {address}"
    assert page.locator("#contact a").get_attribute("href") == f"mailto:{address}"
    assert page.locator(".email").all_text_contents() == [f"First office: {address}", f"Second office: {address}"]
    assert text(".emails") == "Not this class: info@shop.test"
    assert page.locator("#widget").get_attribute("data-contact") == address
    assert text("#widget") == f"Chat: {address}"
    assert page.locator("#not-widget").get_attribute("data-other") == ORIGINAL
    assert text("#not-widget") == "Other: info@shop.test"
    assert text("#footer-mail") == address
    assert text("#aside-mail") == ORIGINAL
    assert text("#outside") == "Anywhere else: info@shop.test"


# Logs the node each XPath search starts from, to see what the snippet looks at.
EVALUATE_SPY = """
(() => {
  const evaluate = Document.prototype.evaluate;
  window.__searched = [];
  Document.prototype.evaluate = function (expression, context, ...rest) {
    window.__searched.push(context.id || context.nodeName);
    return evaluate.call(this, expression, context, ...rest);
  };
})();
"""


def test_content_added_later_is_replaced_without_walking_the_whole_page_again(live_server, page_server, visitor):
    setup = make_setup()
    page = visitor().new_page()
    page.add_init_script(EVALUATE_SPY)
    page.goto(serve(page_server, live_server, setup.site, "later.html"))
    address = wait_for_address(page, "#static")

    page.wait_for_function("window.pageDone === true", timeout=10_000)
    assert wait_for_address(page, "#popup") == address
    assert page.locator("#popup-link").get_attribute("href") == f"mailto:{address}?subject=Popup"
    assert wait_for_address(page, "#status") == address
    assert page.locator("#status").text_content() == f"Contacts: {address}"

    # The whole page twice (at start, and when the address came); after that
    # only the popup (a changed text is looked at directly, without a search).
    assert sorted(page.evaluate("window.__searched")) == ["#document", "#document", "popup"]


def test_two_tabs_of_one_visitor_show_the_same_address(live_server, page_server, visitor):
    setup = make_setup()
    url = serve(page_server, live_server, setup.site, "simple.html")
    context = visitor()
    first = context.new_page()
    first.goto(url)
    address = wait_for_address(first)
    second = context.new_page()
    second.goto(url)

    assert wait_for_address(second) == address
    assert Visitor.objects.count() == 1
    assert list(Lease.objects.filter(released_at__isnull=True).values_list("address__email", flat=True)) == [address]


def test_two_visitors_are_shown_different_addresses(live_server, page_server, visitor):
    setup = make_setup()
    url = serve(page_server, live_server, setup.site, "simple.html")
    pages = [visitor().new_page() for _ in range(2)]
    for page in pages:
        page.goto(url)
    first, second = (wait_for_address(page) for page in pages)

    assert first != second
    assert {live_lease(first).visitor_id, live_lease(second).visitor_id} == set(
        Visitor.objects.values_list("id", flat=True)
    )


def test_ready_callbacks_queued_before_the_script_loads_receive_the_addresses(live_server, page_server, visitor):
    setup = make_setup()
    page = visitor().new_page()
    watch = Watch(page)
    page.goto(serve(page_server, live_server, setup.site, "ready.html"))
    address = wait_for_address(page, "#contact")

    page.wait_for_function("readyCalls.length > 0")
    assert page.evaluate("readyCalls") == [{str(setup.block.pk): address}]
    assert page.locator("#to").input_value() == address  # the page filled its form with it
    # A callback given once the addresses are known is called at once.
    assert page.evaluate("new Promise((resolve) => emailtrack('ready', resolve))") == {str(setup.block.pk): address}
    # The page's own broken callback stayed the page's business.
    assert watch.problems() == []
