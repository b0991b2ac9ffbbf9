"""mailbox_sync: a batch of letters goes in by COPY, column for column as
the ORM would store it, and a letter another sync stored meanwhile is
skipped, not stored twice."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_init

from mailbox_sync.bulk import new_instance
from mailbox_sync.models import Letter, LetterSource
from mailbox_sync.services import Incoming, store_letters
from tests.factories import letter_bytes, make_setup

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)

RICH = (
    "From: =?windows-1251?B?yOLg7SDP5fLw7uI=?= <ivan@client.test>\r\n"
    "To: info+ab@shop.test, Sales <sales@shop.test>\r\n"
    "Cc: boss@client.test\r\n"
    "Delivered-To: info+ab@shop.test\r\n"
    "Subject: =?utf-8?B?0JfQsNGP0LLQutCwINC90LAg0LrQuNGA0L/QuNGH?=\r\n"
    "Date: Thu, 31 Jul 2025 15:00:00 +0300\r\n"
    "Message-ID: <rich@client.test>\r\n"
    "In-Reply-To: <earlier@shop.test>\r\n"
    "References: <first@shop.test> <earlier@shop.test>\r\n"
    "X-Spam-Flag: NO\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nНужен кирпич, 3 поддона.\r\n"
    '--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="schet.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
).encode()


@pytest.fixture
def mailbox(db):
    return make_setup().mailbox


def test_every_column_of_a_copied_letter_reads_back_as_it_was_stored(mailbox):
    incoming = [
        Incoming(RICH, T0, uid=1),
        Incoming(letter_bytes(to="info@shop.test", message_id=False, date=T0), T0 + timedelta(seconds=1), uid=2),
        Incoming(b"\xff\xfe not a letter", T0, uid=3),
        Incoming(RICH.replace(b"<rich@", b"<cut@"), T0, uid=4, size=40 * 1024 * 1024, truncated=True),
    ]
    stored = store_letters(mailbox=mailbox, incoming=incoming, folder="Junk", uidvalidity=9, spam_folder=True)
    assert [letter.uid for letter in stored.letters] == [1, 2, 3, 4]
    assert (stored.malformed, stored.truncated) == (1, 1)
    for letter, item in zip(stored.letters, incoming, strict=True):
        again = Letter.objects.get(pk=letter.pk)
        for field in Letter._meta.concrete_fields:
            assert getattr(again, field.attname) == getattr(letter, field.attname), field.name
        assert bytes(LetterSource.objects.get(letter_id=letter.pk).raw) == item.raw
    rich = Letter.objects.get(pk=stored.letters[0].pk)
    assert rich.created_at is not None and rich.folder == "Junk" and rich.uidvalidity == 9
    assert rich.recipients == {
        "delivered_to": ["info+ab@shop.test"],
        "to": ["info+ab@shop.test", "sales@shop.test"],
        "cc": ["boss@client.test"],
    }
    assert rich.references == ["<first@shop.test>", "<earlier@shop.test>"]
    assert rich.attachments == [{"name": "schet.pdf", "type": "application/pdf", "size": 9}]
    assert rich.subject == "Заявка на кирпич" and rich.sender_name == "Иван Петров"
    assert rich.date_header_offset == 180 and rich.not_lead_reason == "spam folder"
    assert Letter.objects.get(pk=stored.letters[3].pk).size == 40 * 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_a_letter_another_sync_stores_meanwhile_is_skipped_and_the_rest_stored():
    mailbox = make_setup().mailbox
    raws = [letter_bytes(to="info@shop.test", message_id=f"<race-{n}@client.test>") for n in range(3)]
    stored_by_other, release = threading.Event(), threading.Event()
    failures = []

    def other_sync():
        # Stores the middle letter and keeps its transaction open: the batch
        # below does not see it, and its COPY waits on the unique index.
        try:
            with transaction.atomic():
                store_letters(mailbox=mailbox, incoming=[Incoming(raws[1], T0, uid=1)], folder="INBOX", uidvalidity=1)
                stored_by_other.set()
                release.wait(10)
        except Exception as error:  # noqa: BLE001 - reported by the test's thread
            failures.append(error)
            stored_by_other.set()
        finally:
            connection.close()

    other = threading.Thread(target=other_sync)
    other.start()
    assert stored_by_other.wait(10)
    threading.Timer(0.5, release.set).start()
    try:
        stored = store_letters(
            mailbox=mailbox,
            incoming=[Incoming(raw, T0, uid=10 + n) for n, raw in enumerate(raws)],
            folder="INBOX",
            uidvalidity=1,
        )
    finally:
        release.set()
        other.join(10)
    assert failures == []
    assert [letter.uid for letter in stored.letters] == [10, 12]
    assert sorted(Letter.objects.filter(mailbox=mailbox).values_list("uid", flat=True)) == [1, 10, 12]
    assert LetterSource.objects.filter(letter__mailbox=mailbox).count() == 3


def test_a_row_built_by_position_is_the_instance_keywords_build(mailbox):
    """new_instance fills the instance's dict directly: the same values and
    defaults as `Letter(**values)`, unsaved, with the related objects given
    cached; saved, it reads back the same."""
    values = {"mailbox_id": mailbox.pk, "dedupe_key": "k1", "received_at": T0, "subject": "Price", "uid": 7}
    built = new_instance(Letter, values, {"mailbox": mailbox})
    expected = Letter(**values)
    for field in Letter._meta.concrete_fields:
        assert getattr(built, field.attname) == getattr(expected, field.attname), field.name
    assert built.recipients == {} and built.recipients is not expected.recipients  # a default of its own
    assert built._state.adding and built._state.db is None and built.pk is None
    assert Letter.mailbox.is_cached(built) and built.mailbox is mailbox
    built.save()
    again = Letter.objects.get(pk=built.pk)
    assert (again.subject, again.uid, again.mailbox_id, again.received_at) == ("Price", 7, mailbox.pk, T0)


def test_a_row_of_a_model_whose_init_is_listened_to_is_built_by_init(mailbox):
    heard = []

    def listener(sender, instance, **kwargs):
        heard.append(instance)

    post_init.connect(listener, sender=LetterSource)
    try:
        source = new_instance(LetterSource, {"letter_id": 1, "raw": b"x"})
    finally:
        post_init.disconnect(listener, sender=LetterSource)
    assert heard == [source] and source.raw == b"x"


def test_a_row_of_a_model_with_an_unknown_field_is_refused(mailbox):
    with pytest.raises(TypeError, match="no field nonsense"):
        new_instance(Letter, {"nonsense": 1})
