# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""Replies: a letter read from the inbox that answers a tracked message (its
In-Reply-To / References name the message's Message-ID) is that recipient's
reply, infers their open, and ties the message to the letter's lead; a
manager's reply found in Sent that went through the relay brings its opens
and clicks into the lead's timeline."""

import pytest
from django.utils import timezone

from engagement import recording, selectors
from engagement.models import EngagementSettings, Event, EventKind, Message, OpenState
from engagement.relaying import track_relayed_letter
from engagement.replies import record_replies_of_leads
from mailbox_sync.models import Reply
from mailbox_sync.services import ingest_raw
from projects.models import Membership
from tests.engagement_fixtures import IPHONE_UA, empty_stream, fetch, shop, trusted_proxy  # noqa: F401 - fixtures
from tests.factories import letter_bytes, make_setup
from tests.test_engagement_relaying import letter
from tests.test_journal_support import member

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_stream", "trusted_proxy")]


def relayed(setup, recipients=("anna@client.test",)):
    copies = track_relayed_letter(
        project_id=setup.project.pk,
        raw=letter(),
        mail_from="manager@shop.test",
        recipients=list(recipients),
        client_ip="198.51.100.5",
    )
    return Message.objects.get(), copies


def test_a_letter_answering_a_tracked_message_is_a_reply_that_infers_an_open(shop):
    message, _copies = relayed(shop)
    raw = letter_bytes(
        to=shop.site.original_email,
        sender="Anna <Anna@Client.test>",
        subject="Re: Предложение",
        headers={"In-Reply-To": "<offer-1@shop.test>", "References": "<offer-1@shop.test>"},
    )
    stored = ingest_raw(mailbox=shop.mailbox, raw=raw)
    events = list(Event.objects.filter(message=message).order_by("at", "id"))
    assert [(e.kind, e.inferred, e.letter_id) for e in events] == [
        (EventKind.OPEN, True, None),
        (EventKind.REPLY, False, stored.pk),
    ]
    recipient = events[0].recipient
    recipient.refresh_from_db()
    assert recipient.open_state == OpenState.INFERRED and recipient.replied_at is not None
    message.refresh_from_db()
    assert message.lead_id == stored.lead_id
    assert selectors.totals([message.pk])[message.pk]["replies"] == 1
    # The same letter seen again is not a second reply.
    assert record_replies_of_leads([stored.lead_id]) == 0


def test_a_letter_of_another_project_or_thread_is_no_reply(shop):
    message, _copies = relayed(shop)
    other = make_setup(name="Other", original="info@other.test")
    EngagementSettings.objects.create(project=other.project, tracking_enabled=True)
    answer = {"In-Reply-To": "<offer-1@shop.test>"}
    ingest_raw(mailbox=other.mailbox, raw=letter_bytes(to="info@other.test", sender="anna@client.test", headers=answer))
    ingest_raw(mailbox=shop.mailbox, raw=letter_bytes(to=shop.site.original_email, headers={"In-Reply-To": "<x@y>"}))
    assert not Event.objects.filter(message=message).exists()


def test_a_managers_reply_sent_through_the_relay_brings_its_opens_into_the_leads_timeline(shop, client):
    lead_letter = ingest_raw(
        mailbox=shop.mailbox, raw=letter_bytes(to=shop.site.original_email, sender="anna@client.test")
    )
    message, copies = relayed(shop)
    pixel = copies[0].raw.decode().split("/t/o/")[1].split(".gif")[0]
    fetch(client, f"/t/o/{pixel}.gif", ua=IPHONE_UA)
    recording.drain()
    # mailbox_sync found the manager's reply in Sent, linked to the lead.
    Reply.objects.create(
        mailbox=shop.mailbox,
        folder="Sent",
        uidvalidity=1,
        uid=1,
        dedupe_key="offer-1",
        message_id="<offer-1@shop.test>",
        sent_at=timezone.now(),
        recipients=["anna@client.test"],
        lead_id=lead_letter.lead_id,
    )
    [found] = selectors.lead_messages(lead_letter.lead)
    assert found == message
    assert selectors.totals([found.pk])[found.pk]["opens"]["human"] == 1


def test_a_reply_to_a_plain_text_letter_sent_through_the_relay_is_a_reply_too(shop, client):
    raw = b"Subject: Prices\r\nMessage-ID: <plain-3@shop.test>\r\n\r\nOur prices: https://shop.test/prices\r\n"
    track_relayed_letter(
        project_id=shop.project.pk,
        raw=raw,
        mail_from="manager@shop.test",
        recipients=["anna@client.test"],
        client_ip="198.51.100.5",
    )
    message = Message.objects.get()
    answer = letter_bytes(
        to=shop.site.original_email, sender="anna@client.test", headers={"In-Reply-To": "<plain-3@shop.test>"}
    )
    stored = ingest_raw(mailbox=shop.mailbox, raw=answer)
    assert [(e.kind, e.inferred) for e in Event.objects.filter(message=message).order_by("at", "id")] == [
        (EventKind.OPEN, True),
        (EventKind.REPLY, False),
    ]
    message.refresh_from_db()
    assert message.lead_id == stored.lead_id
    client.force_login(member("mark", shop.project, role=Membership.Role.MARKETER))
    page = client.get(f"/journal/sent/{message.pk}/").content.decode()
    assert "The letter had no HTML part: opens and clicks cannot be tracked." in page
    assert 'id="replies">1' in page
