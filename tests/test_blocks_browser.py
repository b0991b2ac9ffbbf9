"""Two tracked addresses on one page, in Chromium: sales@ (elements found by
class) and support@ (found anywhere in the page), each from its own pool; a
letter to each shown address becomes a lead with its block and the visit's
source."""

import pytest
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.services import ingest_raw
from substitution.models import Address, Block, Pool, Rule
from substitution.services import pool_fill
from tests.factories import letter_bytes, make_setup
from tests.test_snippet_support import Watch, serve, visitor_fixture  # noqa: F401 - the `visitor` fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

UTM = "?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"


def sales_and_support():
    """The shop's own address, sales@, in the elements of class "sales" from
    the shop's pool; support@ anywhere in the page from the support pool."""
    setup = make_setup(original="sales@shop.test")
    setup.block.kind, setup.block.selector, setup.block.original_email = Block.Kind.CLASS, "sales", "sales@shop.test"
    setup.block.save()
    support_pool = Pool.objects.create(project=setup.project, name="Support", base_email="support@shop.test", size=5)
    pool_fill(support_pool)
    support = Block.objects.create(project=setup.project, name="Support", original_email="support@shop.test")
    rule = Rule.objects.create(project=setup.project, name="Support", pool=support_pool, order=1)
    rule.sites.add(setup.site)
    rule.blocks.add(support)
    setup.support, setup.support_pool = support, support_pool
    return setup


def shown(page) -> dict:
    """What each place of the page shows, once both originals are gone."""
    page.wait_for_function(
        "() => !document.getElementById('sales-text').textContent.includes('sales@')"
        " && !document.getElementById('support-text').textContent.includes('support@shop')"
    )
    return page.evaluate(
        """() => {
          const $ = (id) => document.getElementById(id);
          return {
            sales: $('sales-text').textContent.replace('Sales: ', ''),
            salesLink: $('sales-link').getAttribute('href'),
            salesTitle: $('sales-link').getAttribute('title'),
            support: $('support-text').textContent.replace('Support: ', ''),
            supportLink: $('support-link').getAttribute('href'),
            supportLinkText: $('support-link').textContent,
            supportWidget: $('support-widget').getAttribute('data-email'),
            outside: $('outside').textContent,
          };
        }"""
    )


def test_each_address_on_the_page_is_replaced_from_its_own_pool_and_its_letters_become_leads_with_their_block(
    live_server, page_server, visitor
):
    setup = sales_and_support()
    url = serve(page_server, live_server, setup.site, "two_addresses.html")
    page = visitor().new_page()
    watch = Watch(page)
    page.goto(url + UTM)
    first = shown(page)

    sales_pool = set(Address.objects.filter(pool=setup.pool).values_list("email", flat=True))
    support_pool = set(Address.objects.filter(pool=setup.support_pool).values_list("email", flat=True))
    sales, support = first["sales"], first["support"]
    assert sales in sales_pool and support in support_pool
    # Text, mailto: (its subject kept) and attributes, each with its block's address.
    assert first["salesLink"] == f"mailto:{sales}?subject=Order"
    assert first["salesTitle"] == sales
    assert first["supportLink"] == f"mailto:{support}?subject=Help"
    assert first["supportLinkText"] == support
    assert first["supportWidget"] == support
    # sales@ outside the elements of class "sales" is not the block's: it stays.
    assert first["outside"] == "Press: sales@shop.test"
    assert watch.problems() == []

    # A second visitor (another browser profile) is shown two other addresses.
    other = visitor().new_page()
    other.goto(url)
    second = shown(other)
    assert second["sales"] in sales_pool and second["support"] in support_pool
    assert second["sales"] != sales and second["support"] != support

    for block, address in ((setup.block, sales), (setup.support, support)):
        letter = ingest_raw(
            mailbox=setup.mailbox,
            raw=letter_bytes(to=address, subject=f"To {block.name}", sender=f"client{block.pk}@client.test"),
            received_at=timezone.now(),
        )
        lead = Lead.objects.get(letters=letter)
        assert lead.recipient == address
        assert lead.lease.block == block
        assert (lead.source, lead.medium, lead.campaign) == ("newsletter", "email", "autumn")
