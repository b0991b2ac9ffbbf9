"""The whole flow on real parts: Chromium → snippet → collect → lease →
letter in Dovecot → IMAP sync → lead with the visitor's source."""

import pytest
from django.utils import timezone

from attribution.models import Lead, MatchKind
from mailbox_sync.models import Letter
from mailbox_sync.services import sync_mailbox
from substitution.models import Address, Lease
from tests.factories import letter_bytes, make_setup

pytestmark = [pytest.mark.browser, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

ORIGINAL = "info@shop.test"
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script async src="{live}/s/{key}.js"></script></head>
<body><h1>Shop</h1>
<p>Write to us: <a id="contact" href="mailto:INFO@shop.test?subject=Order">info@shop.test</a></p>
<p id="plain">Or copy: info@shop.test</p>
</body></html>"""
UTM = "?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"


def shown_address(page) -> str:
    page.wait_for_function("document.getElementById('contact').textContent !== 'info@shop.test'", timeout=10_000)
    return page.locator("#contact").text_content()


def test_a_visitor_writes_from_the_page_and_a_lead_with_their_campaign_appears(
    live_server, page_server, dovecot, browser
):
    user, password = dovecot.account()
    setup = make_setup(original=ORIGINAL, imap_port=dovecot.port, imap_user=user, imap_password=password)
    page_server.pages["/landing"] = PAGE.format(live=live_server.url, key=setup.site.site_key)

    context = browser.new_context()
    page = context.new_page()
    page.goto(page_server.url + "/landing" + UTM)
    address = shown_address(page)

    pool_addresses = set(Address.objects.filter(pool=setup.pool).values_list("email", flat=True))
    assert address in pool_addresses
    assert address != ORIGINAL
    # mailto: matched case-insensitively, its ?subject= kept; plain text replaced too.
    assert page.locator("#contact").get_attribute("href") == f"mailto:{address}?subject=Order"
    assert page.locator("#plain").text_content() == f"Or copy: {address}"

    lease = Lease.objects.get(address__email=address, released_at__isnull=True)
    session = lease.visitor.sessions.get()
    assert (session.utm_source, session.utm_medium, session.utm_campaign) == ("newsletter", "email", "autumn")

    # Another visitor (a second browser profile) is shown another address.
    other = browser.new_context().new_page()
    other.goto(page_server.url + "/landing")
    other_address = shown_address(other)
    assert other_address in pool_addresses
    assert other_address != address

    dovecot.append(
        user,
        letter_bytes(to=address, sender="Ivan Petrov <ivan@client.test>", subject="Autumn offer?"),
        when=timezone.now(),
    )
    result = sync_mailbox(setup.mailbox.pk)
    assert result.error == ""
    assert result.stored == 1

    lead = Lead.objects.get()
    assert lead.campaign == "autumn"
    assert lead.source == "newsletter"
    assert lead.medium == "email"
    assert lead.channel == "email"
    assert lead.sender_email == "ivan@client.test"
    assert lead.subject == "Autumn offer?"
    assert lead.session_id == session.pk
    assert lead.visitor_id == lease.visitor_id
    assert lead.match_kind == MatchKind.LIVE_LEASE
    assert lead.recipient == address

    again = sync_mailbox(setup.mailbox.pk)
    assert again.error == "" and again.stored == 0
    assert Lead.objects.count() == 1
    assert Letter.objects.count() == 1


def test_a_returning_page_view_shows_the_same_address(live_server, page_server, browser):
    setup = make_setup(original=ORIGINAL)
    page_server.pages["/a"] = PAGE.format(live=live_server.url, key=setup.site.site_key)
    context = browser.new_context()
    page = context.new_page()
    page.goto(page_server.url + "/a" + UTM)
    first = shown_address(page)
    page.goto(page_server.url + "/a")
    assert shown_address(page) == first
    assert Lease.objects.filter(released_at__isnull=True).count() == 1


def test_the_original_address_stays_when_the_server_is_down(page_server, browser):
    # A snippet URL nobody answers: the page keeps working with its own address.
    page_server.pages["/down"] = PAGE.format(live="http://127.0.0.1:9", key="nosuchsite")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(page_server.url + "/down")
    page.wait_for_timeout(300)
    assert page.locator("#contact").text_content() == ORIGINAL
    assert errors == []
