# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""The journal's Sent letters beyond the basics: a campaign's figures summed
over all its letters, an inferred open shown as inferred (and a withdrawn one
as a machine's), the filters by date and by state "opened" and "replied",
and a manager's reply sent through the relay and found in Sent telling its
opens and clicks on the lead's page."""

from datetime import timedelta

import pytest
from django.utils import timezone

from engagement import recording, storing
from engagement.models import Message, MessageRecipient
from engagement.relaying import track_relayed_letter
from mailbox_sync.models import Reply
from mailbox_sync.services import ingest_raw
from projects.models import Membership
from tests.engagement_fixtures import (  # noqa: F401 - fixtures
    APPLE_IP,
    CHROME_UA,
    IPHONE_UA,
    empty_stream,
    fetch,
    shop,
    track,
    trusted_proxy,
)
from tests.factories import letter_bytes
from tests.test_engagement_relaying import html_of, letter
from tests.test_journal_support import member

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_stream", "trusted_proxy")]


def signed_in(client, setup):
    client.force_login(member("mark", setup.project, role=Membership.Role.MARKETER))
    return client


def cell(html: str, name: str) -> str:
    return html.split(f'class="num {name}"')[1].split(">", 1)[1].split("<", 1)[0].strip()


def test_a_campaign_filter_sums_the_figures_of_all_its_letters(shop, client):
    first = track(shop.project, recipients=("anna@client.test", "boris@client.test"), campaign="autumn")
    second = track(shop.project, recipients=("vera@client.test",), campaign="autumn")
    other = track(shop.project, recipients=("gleb@client.test",), campaign="spring")
    anna, boris = first.copies
    fetch(client, anna.pixel_url, ua=IPHONE_UA)
    fetch(client, boris.pixel_url, ua="Mozilla/5.0", ip=APPLE_IP)
    fetch(client, second.copies[0].links[0][1])  # a person's click: an inferred open
    fetch(client, other.copies[0].pixel_url, ua=IPHONE_UA)
    recording.drain()
    signed_in(client, shop)
    assert 'id="campaign-totals"' not in client.get("/journal/sent/").content.decode()
    page = client.get("/journal/sent/?campaign=autumn").content.decode()
    totals = page.split('id="campaign-totals"')[1].split("</tr>")[0]
    assert "<strong>autumn</strong>" in totals
    figures = {name: cell(totals, name) for name in ("opens-human", "opens-inferred", "opens-machine", "replies")}
    assert figures == {"opens-human": "1", "opens-inferred": "1", "opens-machine": "1", "replies": "0"}
    assert cell(totals, "clicks-human") == "1"
    assert totals.count('class="num"') == 1 and ">3</td>" in totals  # three recipients
    # The other filters narrow the sum too.
    opened = client.get("/journal/sent/?campaign=autumn&state=opened").content.decode()
    assert cell(opened.split('id="campaign-totals"')[1], "opens-inferred") == "0"


def test_an_inferred_open_shows_as_inferred_and_a_withdrawn_one_as_a_machines(shop, client):
    tracked = track(shop.project, recipients=("anna@client.test", "boris@client.test"))
    anna, boris = tracked.copies
    fetch(client, anna.links[0][1], ua=CHROME_UA)
    fetch(client, boris.links[0][1], ua=CHROME_UA)
    recording.drain()
    fetch(client, boris.links[1][1], ua=CHROME_UA)  # boris's clicks: a scanner's burst after all
    recording.drain()
    signed_in(client, shop)
    page = client.get(f"/journal/sent/{tracked.message.pk}/").content.decode()
    assert "1 more inferred from a click or reply" in page
    assert 'data-email="anna@client.test"' in page and 'data-state="inferred"' in page
    boris_row = page.split('data-email="boris@client.test"')[1].split("</tr>")[0]
    assert 'data-state="none"' in boris_row
    timeline = page.split('<ol class="timeline">')[1].split("</ol>")[0]
    moments = [m for m in timeline.split("<li ")[1:] if "Opened (inferred from a click or reply)" in m]
    assert len(moments) == 2
    anna_open, boris_open = sorted(moments, key=lambda m: "boris@" in m)
    assert 'class="moment open"' in anna_open and 'data-verdict="human"' in anna_open
    assert 'class="moment open machine"' in boris_open and 'data-verdict="scanner"' in boris_open


def test_the_date_and_state_filters(shop, client):
    old = track(shop.project, subject="Old letter")
    Message.objects.filter(pk=old.message.pk).update(created_at=timezone.now() - timedelta(days=10))
    opened = track(shop.project, subject="Opened letter")
    replied = track(shop.project, subject="Replied letter")
    fetch(client, opened.copies[0].pixel_url, ua=IPHONE_UA)
    recording.drain()
    storing.reply_record(recipient=replied.copies[0].recipient, letter_id=None, at=timezone.now())
    signed_in(client, shop)

    def listed(query):
        page = client.get(f"/journal/sent/?{query}").content.decode()
        return {s for s in ("Old letter", "Opened letter", "Replied letter") if s in page}

    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    assert listed(f"date_from={since}") == {"Opened letter", "Replied letter"}
    assert listed("state=opened") == {"Opened letter"}
    assert listed("state=replied") == {"Replied letter"}
    assert listed("state=not_opened") == {"Old letter"}  # a reply infers the open


def test_a_reply_through_the_relay_found_in_sent_shows_its_opens_and_clicks_on_the_leads_page(shop, client):
    lead_letter = ingest_raw(
        mailbox=shop.mailbox, raw=letter_bytes(to=shop.site.original_email, sender="anna@client.test")
    )
    [copy] = track_relayed_letter(
        project_id=shop.project.pk,
        raw=letter(),
        mail_from="manager@shop.test",
        recipients=["anna@client.test"],
        client_ip="198.51.100.5",
    )
    html = html_of(copy.raw)
    pixel = "/t/o/" + html.split("/t/o/")[1].split(".gif")[0] + ".gif"
    link = "/t/c/" + html.split("/t/c/")[1].split('"')[0]
    fetch(client, pixel, ua=IPHONE_UA)
    fetch(client, link, ua=IPHONE_UA)
    recording.drain()
    Reply.objects.create(
        mailbox=shop.mailbox,
        folder="Sent",
        uidvalidity=1,
        uid=1,
        dedupe_key="offer-1",
        message_id="<offer-1@shop.test>",
        sent_at=Message.objects.get().created_at,  # the same letter, read back from Sent
        recipients=["anna@client.test"],
        lead_id=lead_letter.lead_id,
    )
    assert MessageRecipient.objects.get().open_state == "person"
    signed_in(client, shop)
    page = client.get(f"/journal/leads/{lead_letter.lead_id}/").content.decode()
    timeline = page.split('id="lead-timeline"')[1].split("</ol>")[0]
    kinds = [part.split('"')[0] for part in timeline.split('class="moment ')[1:]]
    assert kinds == ["letter", "reply", "sent", "open", "click"]
    assert ">https://shop.test/price</a>" in timeline and "Mobile" in timeline
