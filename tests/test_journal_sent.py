# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""The journal's Sent letters: the list with each message's figures and its
filters, a message's page (recipients, clicks per link, a timeline that labels
machines), and the lead page's timeline where the inbound source meets the
outbound engagement. Nothing of another project shows."""

from datetime import timedelta

import pytest
from django.utils import timezone

from engagement import recording
from engagement.models import EngagementSettings, Event, Message, Verdict
from mailbox_sync.models import Reply
from mailbox_sync.services import ingest_raw
from projects.models import Membership
from tests.engagement_fixtures import (  # noqa: F401 - fixtures
    APPLE_IP,
    CHROME_UA,
    EOP_IP,
    IPHONE_UA,
    empty_stream,
    fetch,
    track,
    trusted_proxy,
)
from tests.factories import letter_bytes, make_setup
from tests.test_journal_support import member

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_stream", "trusted_proxy")]

PRICE = "https://shop.test/price"


@pytest.fixture
def shop():
    setup = make_setup()
    EngagementSettings.objects.create(project=setup.project, tracking_enabled=True)
    return setup


def opened(client, copy, *, ua=CHROME_UA, ip="203.0.113.77"):
    fetch(client, copy.pixel_url, ua=ua, ip=ip)


def clicked(client, copy, url=PRICE, *, ua=CHROME_UA, ip="203.0.113.77"):
    tracked = dict(copy.links)[url]
    fetch(client, tracked, ua=ua, ip=ip)


def signed_in(client, setup, name="mark"):
    client.force_login(member(name, setup.project, role=Membership.Role.MARKETER))
    return client


def test_the_list_shows_each_letters_figures_and_filters_by_campaign_and_state(shop, client):
    autumn = track(shop.project, recipients=("anna@client.test", "boris@client.test"), campaign="autumn")
    spring = track(shop.project, recipients=("vera@client.test",), campaign="spring", subject="Spring offer")
    anna, boris = autumn.copies
    opened(client, anna)
    clicked(client, anna)
    opened(client, boris, ip=EOP_IP)  # a security scanner, not a person
    recording.drain()
    signed_in(client, shop)
    page = client.get("/journal/sent/").content.decode()
    row = page.split(f'data-message="{autumn.message.pk}"')[1].split("</tr>")[0]
    for cell, value in (("opens-human", 1), ("opens-machine", 1), ("clicks-human", 1), ("replies", 0)):
        assert f'class="num {cell}" data-label="' in row
        assert row.split(f'class="num {cell}"')[1].split(">", 1)[1].startswith(str(value)), cell
    assert f'data-message="{spring.message.pk}"' in page
    only_autumn = client.get("/journal/sent/?campaign=autumn").content.decode()
    assert f'data-message="{autumn.message.pk}"' in only_autumn and "Spring offer" not in only_autumn
    clicked_only = client.get("/journal/sent/?state=clicked").content.decode()
    assert f'data-message="{autumn.message.pk}"' in clicked_only
    assert f'data-message="{spring.message.pk}"' not in clicked_only
    not_opened = client.get("/journal/sent/?state=not_opened").content.decode()
    assert f'data-message="{spring.message.pk}"' in not_opened
    assert f'data-message="{autumn.message.pk}"' not in not_opened
    old = (timezone.localdate() - timedelta(days=3)).isoformat()
    assert 'id="empty"' in client.get(f"/journal/sent/?date_to={old}").content.decode()


def test_a_messages_page_shows_recipients_links_and_a_timeline_that_labels_machines(shop, client):
    tracked = track(shop.project, recipients=("anna@client.test", "boris@client.test"))
    anna, boris = tracked.copies
    opened(client, anna, ua="Mozilla/5.0", ip=APPLE_IP)  # Apple Mail Privacy Protection
    opened(client, boris, ua=IPHONE_UA)
    clicked(client, boris)
    recording.drain()
    signed_in(client, shop)
    page = client.get(f"/journal/sent/{tracked.message.pk}/").content.decode()
    assert 'id="opens-human">1' in page
    assert 'data-verdict="apple_mpp">Apple Mail Privacy Protection: 1' in page
    assert 'data-device="mobile">Mobile: 1' in page
    assert 'data-email="boris@client.test"' in page and 'data-state="person"' in page
    assert 'data-email="anna@client.test"' in page and 'data-state="machine"' in page
    link_row = page.split(f'<td class="url">{PRICE}</td>')[1].split("</tr>")[0]
    assert '<td class="num human">1</td>' in link_row and '<td class="num machine">0</td>' in link_row
    timeline = page.split('<ol class="timeline">')[1].split("</ol>")[0]
    assert timeline.count('data-verdict="apple_mpp"') == 1 and 'class="moment open machine"' in timeline
    assert timeline.count('data-verdict="human"') == 2  # boris's open and click


def test_another_projects_letters_never_show(shop, client):
    other = make_setup(name="Other", original="info@other.test")
    EngagementSettings.objects.create(project=other.project, tracking_enabled=True)
    theirs = track(other.project, subject="Their secret offer", campaign="theirs")
    mine = track(shop.project, subject="My offer")
    signed_in(client, shop)
    listing = client.get("/journal/sent/").content.decode()
    assert "My offer" in listing and "Their secret offer" not in listing
    assert client.get(f"/journal/sent/{theirs.message.pk}/").status_code == 404
    assert client.get(f"/journal/sent/?project={other.project.pk}").status_code == 404
    assert client.get(f"/journal/sent/{mine.message.pk}/").status_code == 200


def test_the_lead_page_tells_the_whole_story_from_source_to_click(shop, client):
    at = timezone.now() - timedelta(hours=2)
    lead_letter = ingest_raw(
        mailbox=shop.mailbox,
        raw=letter_bytes(to=shop.site.original_email, sender="anna@client.test", subject="Price list?"),
        received_at=at,
    )
    lead = lead_letter.lead
    reply = track(shop.project, recipients=("anna@client.test",), subject="Re: Price list?", lead_id=lead.pk)
    Message.objects.filter(pk=reply.message.pk).update(created_at=at + timedelta(minutes=14))
    Reply.objects.create(
        mailbox=shop.mailbox,
        folder="Sent",
        uidvalidity=1,
        uid=1,
        dedupe_key="r1",
        message_id="<r1@shop.test>",
        sent_at=at + timedelta(minutes=14),
        recipients=["anna@client.test"],
        lead=lead,
    )
    [copy] = reply.copies
    opened(client, copy, ip=EOP_IP)  # the scanner first
    opened(client, copy, ua=IPHONE_UA)
    clicked(client, copy, ua=IPHONE_UA)
    recording.drain()
    assert Event.objects.filter(message=reply.message, verdict=Verdict.SCANNER).count() == 1
    signed_in(client, shop)
    page = client.get(f"/journal/leads/{lead.pk}/").content.decode()
    timeline = page.split('id="lead-timeline"')[1].split("</ol>")[0]
    kinds = [part.split('"')[0] for part in timeline.split('class="moment ')[1:]]
    assert kinds == ["letter", "reply", "sent", "open machine", "open", "click"]
    assert "14 min after the first letter" in timeline
    assert f">{PRICE}</a>" in timeline
    assert "Mobile" in timeline.split('class="moment open"')[1]
