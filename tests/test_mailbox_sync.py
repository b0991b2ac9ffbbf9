"""mailbox_sync: parsing, storing each letter once, the ingest_eml command and
the read-only IMAP sync against a real Dovecot."""

import hashlib
import io
import socket
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from mailbox_sync import parsing
from mailbox_sync.models import FolderState, Letter, Mailbox
from mailbox_sync.services import (
    claim,
    due_mailbox_ids,
    mailbox_password,
    mailbox_set_password,
    store_letter,
    sync_mailbox,
)
from tests.factories import letter_bytes, make_setup

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)

MULTIPART = b"""\
From: =?utf-8?B?0JjQstCw0L0g0J/QtdGC0YDQvtCy?= <Ivan@Client.TEST>
To: "Shop" <Info+K7M2@Shop.TEST>, second@shop.test
Cc: Boss@Shop.Test
Delivered-To: Info+K7M2@Shop.test
X-Original-To: Alias@Shop.test
Subject: =?utf-8?Q?=D0=9F=D1=80=D0=B0=D0=B9=D1=81?= please
Date: Thu, 31 Jul 2025 15:00:00 +0300
Message-ID: <reply-2@client.test>
In-Reply-To: <first@shop.test>
References: <root@client.test> <first@shop.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

Plain words here.
--inner
Content-Type: text/html; charset=utf-8

<p>Html words here.</p>
--inner--
--outer
Content-Type: application/pdf; name="offer.pdf"
Content-Disposition: attachment; filename="offer.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
"""

HTML_ONLY = b"""\
From: ivan@client.test
To: info@shop.test
Subject: html
Content-Type: text/html; charset=utf-8

<html><head><title>Title words</title><style>p {color: red}</style></head>
<body><p>Hello &amp; welcome</p><script>alert("stolen")</script><div>Second line</div></body></html>
"""


# --- Parsing ------------------------------------------------------------------


def test_it_decodes_the_subject_and_sender_from_rfc2047():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.subject == "Прайс please"
    assert letter.sender_name == "Иван Петров"
    assert letter.sender_email == "ivan@client.test"
    assert not letter.malformed


def test_it_lists_delivered_to_with_x_original_to_and_lower_cases_to_and_cc():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.delivered_to == ["info+k7m2@shop.test", "alias@shop.test"]
    assert letter.to == ["info+k7m2@shop.test", "second@shop.test"]
    assert letter.cc == ["boss@shop.test"]


def test_it_takes_the_text_from_text_plain_when_there_is_one():
    assert parsing.parse(MULTIPART, 1000).text == "Plain words here."


def test_it_takes_the_text_from_html_without_tags_or_script_contents():
    text = parsing.parse(HTML_ONLY, 1000).text
    assert "Hello & welcome" in text
    assert "Second line" in text
    assert "<" not in text
    assert "stolen" not in text
    assert "color: red" not in text


def test_it_cuts_the_text_to_the_limit():
    raw = letter_bytes(to="info@shop.test", body="x" * 5000)
    assert parsing.parse(raw, 1000).text == "x" * 1000
    assert parsing.parse(raw, 10).text == "x" * 10


def test_it_lists_attachments_with_name_and_type():
    attachments = parsing.parse(MULTIPART, 1000).attachments
    assert [(a["name"], a["type"]) for a in attachments] == [("offer.pdf", "application/pdf")]


def test_it_keeps_in_reply_to_references_and_message_id():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.message_id == "<reply-2@client.test>"
    assert letter.in_reply_to == "<first@shop.test>"
    assert letter.references == ["<root@client.test>", "<first@shop.test>"]


def test_it_reads_a_references_header_given_twice():
    raw = b"References: <a@x.test>\r\nReferences: <b@x.test>\r\n" + letter_bytes(to="info@shop.test", body="Hi")
    letter = parsing.parse(raw, 1000)
    assert letter.references == ["<a@x.test>", "<b@x.test>"]
    assert (letter.text, letter.malformed) == ("Hi", False)


def test_it_takes_the_arrival_time_from_the_top_received_header():
    raw = (
        b"Received: from mx2 by mx3; Thu, 31 Jul 2025 12:10:00 +0000\r\n"
        b"Received: from mx1 by mx2; Thu, 31 Jul 2025 12:05:00 +0000\r\n"
    ) + letter_bytes(to="info@shop.test", date=T0)
    letter = parsing.parse(raw, 1000)
    assert letter.received_header_at == T0 + timedelta(minutes=10)
    assert letter.date_header == T0


def test_it_reads_header_names_in_any_case():
    raw = letter_bytes(to="info@shop.test", headers={"LIST-ID": "<news.client.test>", "x-original-to": "A@shop.test"})
    letter = parsing.parse(raw, 1000)
    assert letter.headers["List-Id"] == "<news.client.test>"
    assert "a@shop.test" in letter.delivered_to


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe\x81 garbage \x00", b"\xff" * 300, b"Subject: \xff\xfe\n\n\x00body", b"From: <<<@>>>\n\n"],
)
def test_it_flags_garbage_as_malformed_and_never_raises(raw):
    letter = parsing.parse(raw, 1000)
    assert letter.malformed
    assert letter.parse_error


def test_the_dedupe_key_is_the_message_id_else_a_hash_of_the_raw_letter():
    assert parsing.dedupe_key("<a@b.test>", b"raw") == "<a@b.test>"
    assert parsing.dedupe_key("", b"raw") == "sha256:" + hashlib.sha256(b"raw").hexdigest()


# --- Storing ------------------------------------------------------------------


@pytest.fixture
def mailbox(db):
    return make_setup().mailbox


def store(mailbox, raw, at=T0):
    return store_letter(mailbox=mailbox, raw=raw, received_at=at)


def test_a_letter_with_the_same_message_id_is_stored_once(mailbox):
    first = store(mailbox, letter_bytes(to="info@shop.test", message_id="<same@client.test>"))
    again = store(mailbox, letter_bytes(to="info@shop.test", message_id="<same@client.test>", subject="Other"))
    assert first is not None
    assert again is None
    assert Letter.objects.filter(mailbox=mailbox).count() == 1


def test_letters_without_message_id_are_told_apart_by_their_raw_bytes(mailbox):
    raw = letter_bytes(to="info@shop.test", message_id=False, date=T0)
    assert store(mailbox, raw) is not None
    assert store(mailbox, raw) is None
    assert store(mailbox, letter_bytes(to="info@shop.test", message_id=False, date=T0, body="Other")) is not None
    assert Letter.objects.filter(mailbox=mailbox).count() == 2
    assert all(key.startswith("sha256:") for key in Letter.objects.values_list("dedupe_key", flat=True))


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
    assert bytes(letter.raw) == raw
    assert store(mailbox, raw) is None


def test_garbage_bytes_are_stored_flagged_malformed(mailbox):
    letter = store(mailbox, b"\x00\xff\xfe\x81 garbage \x00")
    letter.refresh_from_db()
    assert letter.malformed
    assert "garbage" in letter.text


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


# --- The sync against Dovecot -------------------------------------------------


def now_s():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def account(dovecot, db):
    user, password = dovecot.account()
    setup = make_setup(imap_port=dovecot.port, imap_user=user, imap_password=password)
    return user, password, setup.mailbox


def append(dovecot, user, when, **kwargs):
    dovecot.append(user, letter_bytes(to="info@shop.test", **kwargs), when=when)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.imap
def test_the_first_sync_takes_only_letters_of_the_last_24_hours(dovecot, account):
    user, _password, mailbox = account
    now = now_s()
    append(dovecot, user, now - timedelta(days=3), subject="Old")
    append(dovecot, user, now - timedelta(hours=1), subject="Recent", date=now - timedelta(days=5))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", 1)
    letter = Letter.objects.get(mailbox=mailbox)
    assert letter.subject == "Recent"
    assert letter.received_at == now - timedelta(hours=1)  # INTERNALDATE, not the Date header
    assert letter.lead is not None


@pytest.mark.imap
def test_letters_older_than_the_window_are_never_read_by_later_syncs(dovecot, account):
    user, _password, mailbox = account
    now = now_s()
    append(dovecot, user, now - timedelta(hours=1), subject="Recent")
    append(dovecot, user, now - timedelta(days=3), subject="Old, higher UID")
    assert sync_mailbox(mailbox.pk).stored == 1
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    assert sync_mailbox(mailbox.pk).stored == 0
    assert list(Letter.objects.values_list("subject", flat=True)) == ["Recent"]


@pytest.mark.imap
def test_a_first_sync_of_only_old_letters_does_not_read_them_later(dovecot, account):
    user, _password, mailbox = account
    append(dovecot, user, now_s() - timedelta(days=3), subject="Old")
    assert sync_mailbox(mailbox.pk).stored == 0
    assert sync_mailbox(mailbox.pk).stored == 0
    assert not Letter.objects.exists()


@pytest.mark.imap
def test_the_next_sync_picks_up_only_new_uids(dovecot, account):
    user, _password, mailbox = account
    append(dovecot, user, now_s() - timedelta(hours=2), subject="First")
    assert sync_mailbox(mailbox.pk).stored == 1
    append(dovecot, user, now_s() - timedelta(minutes=1), subject="Second")
    result = sync_mailbox(mailbox.pk)
    assert (result.stored, result.seen) == (1, 1)
    assert sorted(Letter.objects.values_list("subject", flat=True)) == ["First", "Second"]
    assert FolderState.objects.get(mailbox=mailbox).last_uid == 2


@pytest.mark.imap
def test_re_reading_a_folder_stores_nothing_twice(dovecot, account):
    user, _password, mailbox = account
    append(dovecot, user, now_s() - timedelta(hours=2))
    append(dovecot, user, now_s() - timedelta(hours=1), message_id=False)
    assert sync_mailbox(mailbox.pk).stored == 2
    assert sync_mailbox(mailbox.pk).stored == 0
    FolderState.objects.filter(mailbox=mailbox).delete()  # as after a UIDVALIDITY change
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.seen, result.stored) == ("", 2, 0)
    assert Letter.objects.count() == 2


@pytest.mark.imap
def test_a_letter_stored_by_a_run_that_died_before_attributing_is_attributed_by_the_next_sync(dovecot, account):
    user, _password, mailbox = account
    raw = letter_bytes(to="info@shop.test")
    dovecot.append(user, raw, when=now_s() - timedelta(minutes=5))
    stored = store_letter(mailbox=mailbox, raw=raw, received_at=now_s() - timedelta(minutes=5))
    assert (stored.attributed_at, stored.lead) == (None, None)
    assert sync_mailbox(mailbox.pk).stored == 0
    stored.refresh_from_db()
    assert stored.attributed_at is not None
    assert stored.lead is not None


@pytest.mark.imap
def test_the_sync_leaves_the_mailbox_unchanged(dovecot, account):
    user, password, mailbox = account
    for hours in (1, 2, 3):
        append(dovecot, user, now_s() - timedelta(hours=hours))
    assert sync_mailbox(mailbox.pk).stored == 3
    client = dovecot.client(user, password)
    try:
        info = client.select_folder("INBOX", readonly=True)
        flags = client.get_flags(client.search("ALL"))
    finally:
        client.logout()
    assert info[b"EXISTS"] == 3
    assert len(flags) == 3
    assert all(b"\\Seen" not in f for f in flags.values())


@pytest.mark.imap
def test_a_wrong_password_marks_only_that_mailbox_failing(dovecot, account):
    user, _password, good = account
    bad_user, _ = dovecot.account()
    bad = make_setup(name="Bad", original="info@bad.test", imap_port=dovecot.port, imap_user=bad_user)
    mailbox_set_password(bad.mailbox, "wrong")
    bad.mailbox.save()
    append(dovecot, user, now_s() - timedelta(minutes=5))
    started = timezone.now()
    for mailbox_id in sorted(due_mailbox_ids(started), key=lambda pk: pk != bad.mailbox.pk):
        sync_mailbox(mailbox_id)
    failing = Mailbox.objects.get(pk=bad.mailbox.pk)
    assert failing.state == Mailbox.State.FAILING
    assert "Authentication failed" in failing.last_error
    assert failing.failure_count == 1
    assert failing.next_sync_at > started
    assert failing.claimed_until is None
    good.refresh_from_db()
    assert (good.state, good.last_error) == (Mailbox.State.OK, "")
    assert Letter.objects.filter(mailbox=good).count() == 1


@pytest.mark.imap
def test_a_later_success_clears_the_error(dovecot, account):
    _user, password, mailbox = account
    mailbox_set_password(mailbox, "wrong")
    mailbox.save()
    assert "Authentication failed" in sync_mailbox(mailbox.pk).error
    mailbox_set_password(mailbox, password)
    mailbox.save(update_fields=["password_encrypted"])
    assert sync_mailbox(mailbox.pk).error == ""
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.last_error, mailbox.failure_count) == (Mailbox.State.OK, "", 0)
    assert mailbox.last_success_at is not None


def test_an_unreachable_host_marks_the_mailbox_failing_with_a_clear_message(db):
    port = closed_port()
    mailbox = make_setup(imap_port=port).mailbox
    result = sync_mailbox(mailbox.pk)
    mailbox.refresh_from_db()
    assert mailbox.state == Mailbox.State.FAILING
    assert f"127.0.0.1:{port} unreachable" in mailbox.last_error
    assert mailbox.last_error == result.error
    assert mailbox.failure_count == 1


def test_a_second_claim_is_refused_while_the_first_holds(mailbox):
    assert claim(mailbox.pk, T0)
    assert not claim(mailbox.pk, T0 + timedelta(minutes=1))
    mailbox.refresh_from_db()
    assert claim(mailbox.pk, mailbox.claimed_until + timedelta(seconds=1))


def test_only_active_due_unclaimed_mailboxes_are_enqueued(db):
    def box(name, **state):
        mailbox = make_setup(name=name, original=f"info@{name}.test").mailbox
        Mailbox.objects.filter(pk=mailbox.pk).update(**state)
        return mailbox.pk

    new = box("new")
    due = box("due", next_sync_at=T0 - timedelta(minutes=1))
    box("later", next_sync_at=T0 + timedelta(minutes=1))
    box("off", active=False, next_sync_at=None)
    box("held", next_sync_at=T0 - timedelta(minutes=1), claimed_until=T0 + timedelta(minutes=5))
    stale = box("stale", next_sync_at=T0 - timedelta(minutes=1), claimed_until=T0 - timedelta(minutes=5))
    assert sorted(due_mailbox_ids(T0)) == sorted([new, due, stale])


def test_the_password_is_stored_encrypted(db):
    mailbox = make_setup(imap_password="plain-Secret-42").mailbox
    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert stored.password_encrypted
    assert "plain-Secret-42" not in stored.password_encrypted
    assert mailbox_password(stored) == "plain-Secret-42"


@pytest.mark.imap
def test_the_sync_mailboxes_command_syncs_one_mailbox(dovecot, account):
    user, _password, mailbox = account
    other = make_setup(name="Other", original="info@other.test", imap_port=closed_port()).mailbox
    append(dovecot, user, now_s() - timedelta(minutes=5))
    out = io.StringIO()
    call_command("sync_mailboxes", "--mailbox", str(mailbox.pk), stdout=out, stderr=io.StringIO())
    assert "1 new letters" in out.getvalue()
    assert Letter.objects.filter(mailbox=mailbox).count() == 1
    other.refresh_from_db()
    assert other.state == Mailbox.State.NEW
