"""mailbox_sync: storing each letter exactly once (by UID, and by its
content digest: the same Message-ID and content), in batches of constant
cost, and the ingest_eml command that feeds files through the same pipeline."""

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailbox_sync.models import Letter, LetterCopy
from mailbox_sync.services import Incoming, mailbox_password, store_letter, store_letters
from tests.factories import letter_bytes, make_setup

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)

# --- Storing ------------------------------------------------------------------


@pytest.fixture
def mailbox(db):
    return make_setup().mailbox


def store(mailbox, raw, at=T0):
    return store_letter(mailbox=mailbox, raw=raw, received_at=at)


def test_the_same_letter_is_stored_once_and_a_reused_message_id_with_other_text_is_another(mailbox):
    raw = letter_bytes(to="info@shop.test", message_id="<same@client.test>", date=T0)
    first = store(mailbox, raw)
    assert first is not None
    assert store(mailbox, raw) is None
    other = store(mailbox, letter_bytes(to="info@shop.test", message_id="<same@client.test>", date=T0, subject="Other"))
    assert other is not None
    assert Letter.objects.filter(mailbox=mailbox).count() == 2
    assert set(Letter.objects.values_list("message_id_reused", flat=True)) == {True}


def test_letters_without_message_id_are_told_apart_by_their_content(mailbox):
    raw = letter_bytes(to="info@shop.test", message_id=False, date=T0)
    assert store(mailbox, raw) is not None
    assert store(mailbox, raw) is None
    assert store(mailbox, letter_bytes(to="info@shop.test", message_id=False, date=T0, body="Other")) is not None
    assert Letter.objects.filter(mailbox=mailbox).count() == 2
    assert all(key.startswith("c1:") for key in Letter.objects.values_list("dedupe_key", flat=True))
    assert not Letter.objects.filter(message_id_reused=True).exists()


def test_nul_characters_do_not_break_storing(mailbox):
    raw = (
        b"From: Iv\x00an <ivan@client.test>\r\nTo: info\x00@shop.test, sales@shop.test\r\n"
        b"Subject: Hel\x00lo\r\nMessage-ID: <nul\x00id@client.test>\r\nReferences: <r\x00ef@client.test>\r\n"
        b"X-Original-To: al\x00ias@shop.test\r\n"
        b"Content-Type: text/plain\r\n\r\nBody\x00 text\r\n"
    )
    letter = store(mailbox, raw)
    letter.refresh_from_db()
    assert letter.subject == "Hello"
    assert letter.text == "Body text"
    assert letter.references == ["<ref@client.test>"]
    assert letter.recipients["delivered_to"] == ["alias@shop.test"]
    assert bytes(letter.source.raw) == raw
    assert store(mailbox, raw) is None


def test_garbage_bytes_are_stored_flagged_malformed_with_their_size(mailbox):
    raw = b"\x00\xff\xfe\x81 garbage \x00"
    letter = store(mailbox, raw)
    letter.refresh_from_db()
    assert letter.malformed and letter.parse_error
    assert letter.size == len(raw)
    assert "garbage" in letter.text


def test_a_batch_costs_the_same_few_queries_whatever_its_size(mailbox):
    def batch(n, start):
        return [
            Incoming(letter_bytes(to="info@shop.test", subject=f"L{i}"), T0, uid=i) for i in range(start, start + n)
        ]

    with CaptureQueriesContext(connection) as small:
        assert len(store_letters(mailbox=mailbox, incoming=batch(2, 1), folder="INBOX", uidvalidity=7).letters) == 2
    with CaptureQueriesContext(connection) as large:
        assert len(store_letters(mailbox=mailbox, incoming=batch(40, 3), folder="INBOX", uidvalidity=7).letters) == 40
    assert len(large.captured_queries) == len(small.captured_queries) <= 6
    assert Letter.objects.filter(mailbox=mailbox).count() == 42


def test_a_batch_records_copies_of_letters_stored_before_and_within_itself(mailbox):
    same = letter_bytes(to="info@shop.test", message_id="<twice@client.test>")
    store_letters(mailbox=mailbox, incoming=[Incoming(same, T0, uid=1)], folder="INBOX", uidvalidity=7)
    new = letter_bytes(to="info@shop.test", message_id="<new@client.test>")
    stored = store_letters(
        mailbox=mailbox,
        incoming=[
            Incoming(letter_bytes(to="info@shop.test", subject="Same UID"), T0, uid=1),  # UID 1 is stored
            Incoming(same, T0, uid=2),  # the same letter under another UID (a copy in the folder)
            Incoming(new, T0, uid=3),
            Incoming(new, T0, uid=4),
        ],
        folder="INBOX",
        uidvalidity=7,
    )
    assert [letter.uid for letter in stored.letters] == [3]
    assert [outcome.seen for outcome in stored.outcomes] == ["known_uid", "copy", "stored", "copy"]
    assert Letter.objects.filter(mailbox=mailbox).count() == 2
    copies = {copy.uid: copy.letter.uid for copy in LetterCopy.objects.filter(mailbox=mailbox)}
    assert copies == {2: 1, 4: 3}


def test_the_same_uid_in_another_uidvalidity_or_folder_is_another_letter(mailbox):
    def one(folder, uidvalidity, n):
        raw = letter_bytes(to="info@shop.test", message_id=f"<{n}@client.test>")
        return store_letters(
            mailbox=mailbox, incoming=[Incoming(raw, T0, uid=1)], folder=folder, uidvalidity=uidvalidity
        )

    assert len(one("INBOX", 1, "a").letters) == 1
    assert len(one("INBOX", 2, "b").letters) == 1
    assert len(one("Заявки", 1, "c").letters) == 1
    assert len(one("INBOX", 1, "d").letters) == 0


def test_a_letter_over_the_size_limit_keeps_its_real_size(mailbox):
    raw = letter_bytes(to="info@shop.test", body="start of a long letter")
    stored = store_letters(
        mailbox=mailbox, incoming=[Incoming(raw, T0, uid=9, size=40_000_000, truncated=True)], folder="INBOX"
    )
    letter = Letter.objects.get(pk=stored.letters[0].pk)
    assert (letter.size, letter.truncated, letter.text) == (40_000_000, True, "start of a long letter")
    assert stored.truncated == 1


def test_every_corpus_letter_is_stored_in_one_batch(mailbox):
    corpus = Path(__file__).parent / "letters"
    cases = json.loads((corpus / "expected.json").read_text(encoding="utf-8"))
    incoming = [Incoming((corpus / case["file"]).read_bytes(), T0, uid=n) for n, case in enumerate(cases, 1)]
    stored = store_letters(mailbox=mailbox, incoming=incoming, folder="INBOX", uidvalidity=1)
    assert len(stored.letters) == len(cases)
    assert stored.malformed == sum(1 for case in cases if case.get("malformed"))
    by_uid = {letter.uid: letter for letter in Letter.objects.filter(mailbox=mailbox)}
    for n, case in enumerate(cases, 1):
        assert by_uid[n].subject == case["subject"], case["file"]
        assert case["text"] in by_uid[n].text, case["file"]


# --- ingest_eml ---------------------------------------------------------------


def ingest(mailbox_id, *paths):
    out = io.StringIO()
    call_command("ingest_eml", "--mailbox", str(mailbox_id), *[str(p) for p in paths], stdout=out)
    return out.getvalue()


def test_ingest_eml_takes_the_arrival_time_from_the_top_received_header(mailbox, tmp_path):
    path = tmp_path / "a.eml"
    path.write_bytes(
        b"Received: from mx2 by mx3; Thu, 31 Jul 2025 15:30:00 +0300\r\n"
        b"Received: from mx1 by mx2; Thu, 31 Jul 2025 12:20:00 +0000\r\n"
        + letter_bytes(to="info@shop.test", date=T0 - timedelta(days=3))
    )
    output = ingest(mailbox.pk, path)
    letter = Letter.objects.get(mailbox=mailbox)
    assert letter.received_at == T0 + timedelta(minutes=30)
    assert letter.date_header == T0 - timedelta(days=3)
    assert letter.origin == Letter.Origin.FILE
    assert "1 new letters" in output


def test_ingest_eml_takes_the_arrival_time_from_the_date_header_without_received(mailbox, tmp_path):
    path = tmp_path / "a.eml"
    path.write_bytes(letter_bytes(to="info@shop.test", date=T0))
    ingest(mailbox.pk, path)
    assert Letter.objects.get(mailbox=mailbox).received_at == T0


def test_ingest_eml_refuses_an_unknown_mailbox(mailbox, tmp_path):
    path = tmp_path / "a.eml"
    path.write_bytes(letter_bytes(to="info@shop.test"))
    with pytest.raises(CommandError, match="No mailbox"):
        ingest(mailbox.pk + 1000, path)
    assert not Letter.objects.exists()


def test_ingest_eml_stores_a_file_once_and_says_so(mailbox, tmp_path):
    path = tmp_path / "a.eml"
    path.write_bytes(letter_bytes(to="info@shop.test"))
    assert "1 new letters" in ingest(mailbox.pk, path)
    assert "already stored" in ingest(mailbox.pk, path)
    assert Letter.objects.filter(mailbox=mailbox).count() == 1


def test_the_password_is_stored_encrypted(db):
    mailbox = make_setup(imap_password="plain-Secret-42").mailbox
    stored = type(mailbox).objects.get(pk=mailbox.pk)
    assert stored.password_encrypted
    assert "plain-Secret-42" not in stored.password_encrypted
    assert mailbox_password(stored) == "plain-Secret-42"
