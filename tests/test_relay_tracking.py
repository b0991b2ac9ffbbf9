"""A manager's letter through the relay with tracking on: the upstream
receives each recipient's own copy (their pixel and signed links in the HTML
part) and every other byte of the letter as it was sent; an opted-out
recipient gets the letter untouched; the recipients count as delivered when
the upstream takes their copy, even after a wait in the queue."""

import email
from email import policy

import pytest

from engagement.models import EngagementSettings, Message, MessageRecipient, OptOut, Origin
from engagement.relaying import find_html_parts
from integrations.models import OutboundStatus
from relay import queue
from relay.models import QueuedLetter
from tests.test_relay_support import client, letter

pytest_plugins = ["tests.test_relay_support"]
pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = ["ivan@client.test", "olga@client.test", "quiet@client.test"]


def _outside_html(raw: bytes) -> bytes:
    pieces, position = [], 0
    for part in find_html_parts(raw):
        pieces.append(raw[position : part.start])
        position = part.end
    return b"".join(pieces) + raw[position:]


def _html(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()


@pytest.fixture
def tracked(relay_account):
    EngagementSettings.objects.create(project=relay_account.project, tracking_enabled=True)
    OptOut.objects.create(project=relay_account.project, email="quiet@client.test")
    return relay_account


def test_each_recipient_gets_their_own_pixel_and_links_and_every_other_byte_unchanged(
    relay_server, upstream_server, tracked
):
    raw = letter(to=RECIPIENTS)
    with client(relay_server, tracked) as conn:
        assert conn.sendmail("anna@shop.test", RECIPIENTS, raw) == {}

    by_recipient = {tuple(r.rcpt_tos): r.content for r in upstream_server.letters}
    assert sorted(by_recipient) == [("ivan@client.test",), ("olga@client.test",), ("quiet@client.test",)]
    assert by_recipient[("quiet@client.test",)] == raw  # opted out: untouched

    ivan, olga = _html(by_recipient[("ivan@client.test",)]), _html(by_recipient[("olga@client.test",)])
    for html in (ivan, olga):
        assert "/t/o/" in html and "/t/c/" in html
        assert 'href="https://shop.test/prices"' not in html
    pixel = [piece for piece in ivan.split('"') if "/t/o/" in piece]
    assert pixel and all(p not in olga for p in pixel)  # each recipient's opens are their own
    for copy in (by_recipient[("ivan@client.test",)], by_recipient[("olga@client.test",)]):
        assert copy != raw
        assert _outside_html(copy) == _outside_html(raw)  # headers, text part, boundaries: byte-identical

    message = Message.objects.get(project=tracked.project)
    assert message.origin == Origin.RELAY and message.message_id.strip("<>") == "letter-1@shop.test"
    recipients = MessageRecipient.objects.filter(message=message)
    assert sorted(r.email for r in recipients) == ["ivan@client.test", "olga@client.test"]
    assert all(r.delivered_at is not None for r in recipients)
    assert sorted(len(row.recipient_ids) for row in QueuedLetter.objects.all()) == [0, 1, 1]


def test_a_tracked_recipient_counts_as_delivered_only_when_the_upstream_takes_the_letter(
    relay_server, upstream_server, tracked
):
    upstream_server.stop()
    with client(relay_server, tracked) as conn:
        conn.sendmail("anna@shop.test", ["ivan@client.test"], letter())
    recipient = MessageRecipient.objects.get(email="ivan@client.test")
    assert recipient.delivered_at is None
    row = QueuedLetter.objects.get()
    assert row.status == OutboundStatus.PENDING

    upstream_server.start()
    retried_at = row.next_attempt_at
    assert queue.attempt(row.pk, retried_at).status == OutboundStatus.SENT
    recipient.refresh_from_db()
    assert recipient.delivered_at == retried_at
    [received] = upstream_server.letters
    assert "/t/o/" in _html(received.content)


def test_a_letter_with_tracking_off_goes_out_untouched(relay_server, upstream_server, relay_account):
    raw = letter(to=RECIPIENTS)
    with client(relay_server, relay_account) as conn:
        conn.sendmail("anna@shop.test", RECIPIENTS, raw)
    [received] = upstream_server.letters
    assert received.content == raw and received.rcpt_tos == RECIPIENTS
    assert not Message.objects.exists()


def test_a_garbled_letter_is_relayed_unchanged(relay_server, upstream_server, tracked):
    raw = b"Subject: \xff\xfe broken\r\nContent-Type: multipart/alternative; boundary=\r\n\r\n<html><a href=x>\r\n"
    with client(relay_server, tracked) as conn:
        conn.sendmail("anna@shop.test", ["ivan@client.test"], raw)
    [received] = upstream_server.letters
    assert received.content == raw


def test_a_plain_text_letter_goes_out_unchanged_and_its_recipients_count_as_delivered(
    relay_server, upstream_server, tracked
):
    raw = (
        b"From: anna@shop.test\r\nTo: ivan@client.test, olga@client.test, quiet@client.test\r\n"
        b"Subject: Prices\r\nMessage-ID: <plain-1@shop.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Our prices: https://shop.test/prices\r\n"
    )
    with client(relay_server, tracked) as conn:
        assert conn.sendmail("anna@shop.test", RECIPIENTS, raw) == {}
    assert all(received.content == raw for received in upstream_server.letters)
    assert sorted(r for received in upstream_server.letters for r in received.rcpt_tos) == sorted(RECIPIENTS)
    message = Message.objects.get(project=tracked.project)
    assert (message.has_html, message.subject, message.message_id) == (False, "Prices", "<plain-1@shop.test>")
    recipients = MessageRecipient.objects.filter(message=message)
    assert sorted(r.email for r in recipients) == ["ivan@client.test", "olga@client.test"]  # quiet opted out
    assert all(r.delivered_at is not None for r in recipients)
    assert not message.links.exists()
