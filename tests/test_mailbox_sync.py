"""mailbox_sync: the sync against a real Dovecot. The first sync reads the
last 24 hours by arrival time, later syncs every UID above the high-water
mark; the mailbox is never changed; UIDVALIDITY changes, every-folder mode,
spam folders, oversized and unreadable letters, and bounded memory."""

import base64
import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from mailbox_sync import parsing
from mailbox_sync.models import FolderState, Letter, Mailbox
from mailbox_sync.services import due_mailbox_ids, mailbox_set_password, store_letter, sync_mailbox
from tests.factories import letter_bytes, make_setup
from tests.test_mailbox_sync_connect import Relay, closed_port

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
CORPUS = Path(__file__).parent / "letters"


def now_s():
    return timezone.now().replace(microsecond=0)


def append(server, user, when, folder="INBOX", **kwargs):
    return server.append(user, letter_bytes(to="info@shop.test", **kwargs), when=when, folder=folder)


def subjects(mailbox) -> list[str]:
    return sorted(Letter.objects.filter(mailbox=mailbox).values_list("subject", flat=True))


def resync(mailbox):
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    return sync_mailbox(mailbox.pk)


@pytest.mark.imap
def test_the_first_sync_takes_only_letters_of_the_last_24_hours(mail_server, account):
    user, _password, mailbox = account
    now = now_s()
    append(mail_server, user, now - timedelta(days=3), subject="Old")
    append(mail_server, user, now - timedelta(hours=1), subject="Recent", date=now - timedelta(days=5))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", 1)
    letter = Letter.objects.get(mailbox=mailbox)
    assert letter.subject == "Recent"
    assert letter.received_at == now - timedelta(hours=1)  # INTERNALDATE, not the Date header
    assert letter.lead is not None


@pytest.mark.imap
def test_letters_older_than_the_window_are_never_read_by_later_syncs(mail_server, account):
    user, _password, mailbox = account
    now = now_s()
    append(mail_server, user, now - timedelta(hours=1), subject="Recent")
    append(mail_server, user, now - timedelta(days=3), subject="Old, higher UID")
    assert sync_mailbox(mailbox.pk).stored == 1
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    assert sync_mailbox(mailbox.pk).stored == 0
    assert list(Letter.objects.values_list("subject", flat=True)) == ["Recent"]


@pytest.mark.imap
def test_a_first_sync_of_only_old_letters_does_not_read_them_later(mail_server, account):
    user, _password, mailbox = account
    append(mail_server, user, now_s() - timedelta(days=3), subject="Old")
    assert sync_mailbox(mailbox.pk).stored == 0
    assert sync_mailbox(mailbox.pk).stored == 0
    assert not Letter.objects.exists()


@pytest.mark.imap
def test_the_next_sync_picks_up_only_new_uids(mail_server, account):
    user, _password, mailbox = account
    append(mail_server, user, now_s() - timedelta(hours=2), subject="First")
    assert sync_mailbox(mailbox.pk).stored == 1
    append(mail_server, user, now_s() - timedelta(minutes=1), subject="Second")
    result = sync_mailbox(mailbox.pk)
    assert (result.stored, result.seen) == (1, 1)
    assert sorted(Letter.objects.values_list("subject", flat=True)) == ["First", "Second"]
    assert FolderState.objects.get(mailbox=mailbox).last_uid == 2


@pytest.mark.imap
def test_re_reading_a_folder_stores_nothing_twice(mail_server, account):
    user, _password, mailbox = account
    append(mail_server, user, now_s() - timedelta(hours=2))
    append(mail_server, user, now_s() - timedelta(hours=1), message_id=False)
    assert sync_mailbox(mailbox.pk).stored == 2
    assert sync_mailbox(mailbox.pk).stored == 0
    FolderState.objects.filter(mailbox=mailbox).delete()  # as after a UIDVALIDITY change
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.seen, result.stored) == ("", 2, 0)
    assert Letter.objects.count() == 2


@pytest.mark.imap
def test_a_letter_stored_by_a_run_that_died_before_attributing_is_attributed_by_the_next_sync(mail_server, account):
    user, _password, mailbox = account
    raw = letter_bytes(to="info@shop.test")
    mail_server.append(user, raw, when=now_s() - timedelta(minutes=5))
    stored = store_letter(mailbox=mailbox, raw=raw, received_at=now_s() - timedelta(minutes=5))
    assert (stored.attributed_at, stored.lead) == (None, None)
    assert sync_mailbox(mailbox.pk).stored == 0
    stored.refresh_from_db()
    assert stored.attributed_at is not None
    assert stored.lead is not None


@pytest.mark.imap
def test_the_sync_changes_nothing_in_the_mailbox_not_even_flags(mail_server, account):
    user, password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folder_mode=Mailbox.FolderMode.ALL, watch_sent=True)
    for hours in (1, 2, 3):
        append(mail_server, user, now_s() - timedelta(hours=hours))
    append(mail_server, user, now_s() - timedelta(hours=1), folder="Заявки")
    append(mail_server, user, now_s() - timedelta(hours=1), folder="Gesendet")
    client = mail_server.client(user, password)
    try:  # some letters already read or flagged by the owner
        client.select_folder("INBOX")
        client.add_flags([1], [b"\\Seen"])
        client.add_flags([2], [b"\\Flagged", b"$Important"])
    finally:
        client.logout()
    before = mail_server.snapshot(user, password)
    assert before["Заявки"]["flags"] == {1: [b"\\Recent"]}  # \Recent: still unseen by any session
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored, result.replies) == ("", 4, 1)
    assert mail_server.snapshot(user, password) == before


@pytest.mark.imap
def test_a_wrong_password_marks_only_that_mailbox_failing(mail_server, account):
    user, _password, good = account
    bad_user, _ = mail_server.account()
    bad = make_setup(name="Bad", original="info@bad.test", imap_port=mail_server.port, imap_user=bad_user)
    mailbox_set_password(bad.mailbox, "wrong")
    bad.mailbox.save()
    append(mail_server, user, now_s() - timedelta(minutes=5))
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
def test_a_later_success_clears_the_error(mail_server, account):
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


@pytest.mark.imap
def test_the_sync_mailboxes_command_syncs_one_mailbox(mail_server, account):
    user, _password, mailbox = account
    other = make_setup(name="Other", original="info@other.test", imap_port=closed_port()).mailbox
    append(mail_server, user, now_s() - timedelta(minutes=5))
    out = io.StringIO()
    call_command("sync_mailboxes", "--mailbox", str(mailbox.pk), stdout=out, stderr=io.StringIO())
    assert "1 new letters" in out.getvalue()
    assert Letter.objects.filter(mailbox=mailbox).count() == 1
    other.refresh_from_db()
    assert other.state == Mailbox.State.NEW


@pytest.mark.imap
def test_the_command_shows_a_progress_bar_and_counts_unreadable_letters(mail_server, account, capsys):
    user, _password, mailbox = account
    append(mail_server, user, now_s() - timedelta(minutes=5))
    mail_server.append(user, b"\xff\xfe garbage without headers \x81", when=now_s() - timedelta(minutes=4))
    out = io.StringIO()
    call_command("sync_mailboxes", "--mailbox", str(mailbox.pk), stdout=out, stderr=io.StringIO())
    assert "2 new letters (1 unreadable)" in out.getvalue()
    assert "Shop inbox / INBOX" in capsys.readouterr().err  # tqdm draws on the process's stderr


# --- Exactly once -----------------------------------------------------------------------


@pytest.mark.imap
def test_a_uidvalidity_change_re_reads_the_window_and_stores_only_what_is_new(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folders="Заявки")
    when = now_s() - timedelta(hours=1)
    known = [
        letter_bytes(to="info@shop.test", subject="With Message-ID"),
        letter_bytes(to="info@shop.test", subject="No Message-ID", message_id=False, date=T0),
    ]
    for raw in known:
        mail_server.append(user, raw, when=when, folder="Заявки")
    assert sync_mailbox(mailbox.pk).stored == 2
    old_validity = FolderState.objects.get(mailbox=mailbox).uidvalidity

    mail_server.recreate_folder(user, "Заявки")  # the server renumbers the folder
    for raw in reversed(known):  # the same letters, under new UIDs
        mail_server.append(user, raw, when=when, folder="Заявки")
    # Same sender, subject and Date as a stored letter, but another letter.
    twin = letter_bytes(to="info@shop.test", subject="No Message-ID", message_id=False, date=T0, body="Second")
    mail_server.append(user, twin, when=when, folder="Заявки")
    result = resync(mailbox)
    assert (result.error, result.stored) == ("", 1)
    state = FolderState.objects.get(mailbox=mailbox)
    assert state.uidvalidity != old_validity
    assert (state.last_uid, state.window_since) == (3, None)
    assert subjects(mailbox) == ["No Message-ID", "No Message-ID", "With Message-ID"]
    assert resync(mailbox).stored == 0


@pytest.mark.imap
def test_a_first_read_cut_short_resumes_by_date_and_never_takes_old_letters(mail_server, account, settings):
    user, _password, mailbox = account
    settings.IMAP_FETCH_BATCH = 2
    now = now_s()
    raws, dates = [], []
    for n in range(12):  # recent and old letters alternate in UID order
        old = n % 2 == 1
        raws.append(letter_bytes(to="info@shop.test", subject=f"{'Old' if old else 'New'} {n:02d}", body="x" * 20_000))
        dates.append(now - (timedelta(days=3) if old else timedelta(hours=1)))
    mail_server.append_many(user, raws, dates)
    relay = Relay(mail_server.port, after=60_000)  # one batch of two 20 KB letters gets through
    try:
        Mailbox.objects.filter(pk=mailbox.pk).update(port=relay.port)
        assert sync_mailbox(mailbox.pk).stored == 2
    finally:
        relay.close()
    assert FolderState.objects.get(mailbox=mailbox).window_since is not None
    Mailbox.objects.filter(pk=mailbox.pk).update(port=mail_server.port)
    assert resync(mailbox).stored == 4
    assert subjects(mailbox) == [f"New {n:02d}" for n in range(0, 12, 2)]
    state = FolderState.objects.get(mailbox=mailbox)
    assert (state.window_since, state.last_uid) == (None, 12)


# --- Folders ----------------------------------------------------------------------------


@pytest.mark.imap
def test_every_folder_mode_reads_tag_folders_and_skips_sent_drafts_trash_and_spam(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folder_mode=Mailbox.FolderMode.ALL)
    recent = now_s() - timedelta(hours=1)
    read = ["INBOX", "Заявки", "Заявки/k7m2", "Archive"]
    # Skipped by special-use flag (these names mean nothing to us) or by name.
    skipped = ["Gesendet", "Papierkorb", "Unerwünscht", "Drafts", "Spam", "Отправленные", "Trash", "Корзина"]
    for folder in read + skipped:
        append(mail_server, user, recent, folder=folder, subject=folder)
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", len(read))
    assert subjects(mailbox) == sorted(read)
    assert sorted(FolderState.objects.filter(mailbox=mailbox).values_list("name", flat=True)) == sorted(read)

    # A folder that appears later (a new tag) is read back to the mailbox's
    # horizon, not from the moment it was found.
    append(mail_server, user, recent, folder="Заявки/p9q3", subject="New tag")
    assert resync(mailbox).stored == 1
    assert "New tag" in subjects(mailbox)


@pytest.mark.imap
def test_the_same_letter_in_two_folders_is_stored_once(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folder_mode=Mailbox.FolderMode.ALL)
    raw = letter_bytes(to="info@shop.test", subject="Copied by a filter")
    mail_server.append(user, raw, when=now_s() - timedelta(hours=1))
    mail_server.append(user, raw, when=now_s() - timedelta(hours=1), folder="Заявки")
    assert sync_mailbox(mailbox.pk).stored == 1
    assert Letter.objects.get(mailbox=mailbox).folder == "INBOX"


@pytest.mark.imap
def test_letters_in_a_watched_spam_folder_are_stored_but_never_leads(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folders="INBOX, Unerwünscht")
    append(mail_server, user, now_s() - timedelta(hours=1), folder="Unerwünscht", subject="Cheap pills")
    append(mail_server, user, now_s() - timedelta(hours=1), subject="Real enquiry")
    assert sync_mailbox(mailbox.pk).stored == 2
    spam = Letter.objects.get(mailbox=mailbox, subject="Cheap pills")
    assert (spam.not_lead_reason, spam.lead) == ("spam folder", None)
    assert spam.attributed_at is not None
    assert Letter.objects.get(mailbox=mailbox, subject="Real enquiry").lead is not None


@pytest.mark.imap
def test_a_missing_folder_fails_the_mailbox_but_the_other_folders_are_read(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folders="Leads, INBOX")
    append(mail_server, user, now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert result.stored == 1
    failing = Mailbox.objects.get(pk=mailbox.pk)
    assert failing.state == Mailbox.State.FAILING
    assert "Folder 'Leads' is missing" in failing.last_error


# --- Not leads ------------------------------------------------------------------------------


@pytest.mark.imap
@pytest.mark.parametrize(
    ("headers", "sender", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "Ivan <ivan@client.test>", "auto-reply"),
        ({}, "MAILER-DAEMON@mx.client.test", "bounce"),
        ({"List-Id": "<news.client.test>"}, "news@client.test", "mailing list"),
        ({"Precedence": "bulk"}, "promo@client.test", "bulk"),
        ({"X-Spam-Flag": "YES"}, "spammer@client.test", "spam"),
        ({}, "Shop <info@shop.test>", "own address"),
    ],
)
def test_letters_that_are_not_enquiries_are_stored_with_the_reason_and_never_leads(
    mail_server, account, headers, sender, reason
):
    user, _password, mailbox = account
    mail_server.append(
        user, letter_bytes(to="info@shop.test", sender=sender, headers=headers), when=now_s() - timedelta(hours=1)
    )
    assert sync_mailbox(mailbox.pk).stored == 1
    letter = Letter.objects.get(mailbox=mailbox)
    assert reason in letter.not_lead_reason
    assert letter.lead is None


@pytest.mark.imap
def test_a_sender_on_the_projects_exclusion_list_is_stored_but_never_a_lead(mail_server, account):
    from attribution.models import Exclusion

    user, _password, mailbox = account
    Exclusion.objects.create(project=mailbox.project, value="supplier.test")
    for sender in ("Anna <anna@sales.supplier.test>", "Ivan <ivan@client.test>"):
        mail_server.append(user, letter_bytes(to="info@shop.test", sender=sender), when=now_s() - timedelta(hours=1))
    assert sync_mailbox(mailbox.pk).stored == 2
    supplier = Letter.objects.get(mailbox=mailbox, sender_email="anna@sales.supplier.test")
    assert (supplier.lead, "exclusion" in supplier.not_lead_reason) == (None, True)
    assert Letter.objects.get(mailbox=mailbox, sender_email="ivan@client.test").lead is not None


# --- Large letters, unreadable letters, memory -----------------------------------


def oversized(megabytes: int) -> bytes:
    attachment = ("QUJD" * 19 + "\r\n") * (megabytes * 1024 * 1024 // 78)
    return (
        "From: Ivan <ivan@client.test>\r\nTo: info@shop.test\r\nSubject: Big drawings\r\n"
        "Message-ID: <big@client.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nЧертежи во вложении.\r\n"
        '--b\r\nContent-Type: application/octet-stream; name="plans.dwg"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n" + attachment + "--b--\r\n"
    ).encode()


@pytest.mark.imap
def test_a_letter_over_the_size_limit_is_stored_with_headers_size_and_the_start_of_its_body(
    mail_server, account, settings
):
    user, _password, mailbox = account
    settings.LETTER_MAX_BYTES = 1024 * 1024
    settings.LETTER_TRUNCATED_BODY_BYTES = 64 * 1024
    raw = oversized(8)
    mail_server.append(user, raw, when=now_s() - timedelta(hours=1))
    append(mail_server, user, now_s() - timedelta(minutes=30), subject="Small one")
    tracemalloc.start()
    try:
        result = sync_mailbox(mailbox.pk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.error, result.stored, result.truncated) == ("", 2, 1)
    big = Letter.objects.get(mailbox=mailbox, subject="Big drawings")
    assert big.truncated
    assert big.size == len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))  # RFC822.SIZE
    assert len(bytes(big.source.raw)) < 70 * 1024
    assert big.text == "Чертежи во вложении."
    assert (big.sender_email, big.message_id) == ("ivan@client.test", "<big@client.test>")
    # The 8 MB letter was never in memory whole (nor were its copies).
    assert peak < 4 * 1024 * 1024, peak


def oversized_with_attachments() -> bytes:
    """A 2 MB letter whose attachments lie before, in and after its first 64 KB."""

    def base64_part(headers: str, data: bytes) -> str:
        encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
        return f"--b\r\n{headers}Content-Transfer-Encoding: base64\r\n\r\n{encoded}"

    inner = "From: Anna <anna@client.test>\r\nSubject: Earlier letter\r\n\r\nThe earlier letter.\r\n"
    return (
        "From: Ivan <ivan@client.test>\r\nTo: info@shop.test\r\nSubject: Drawings and invoice\r\n"
        "Message-ID: <big-attachments@client.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nВсё во вложении.\r\n"
        + base64_part('Content-Type: image/png; name="logo.png"\r\n', bytes(range(256)) * 4)
        + base64_part(
            'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="plans.dwg"\r\n',
            bytes(2_000_000),
        )
        + base64_part(
            "Content-Type: application/pdf\r\n"
            "Content-Disposition: attachment; filename*=utf-8''%D0%A1%D1%87%D1%91%D1%82.pdf\r\n",
            b"%PDF" * 1250,
        )
        + base64_part('Content-Type: application/msword; name="=?utf-8?B?0JTQvtCz0L7QstC+0YA=?=.doc"\r\n', b"doc" * 7)
        + f"--b\r\nContent-Type: message/rfc822\r\n\r\n{inner}"
        + "--b--\r\n"
    ).encode()


@pytest.mark.imap
def test_every_attachment_of_a_letter_over_the_size_limit_is_listed_from_its_bodystructure(
    mail_server, account, settings
):
    user, _password, mailbox = account
    settings.LETTER_MAX_BYTES = 1024 * 1024
    settings.LETTER_TRUNCATED_BODY_BYTES = 64 * 1024
    raw = oversized_with_attachments()
    mail_server.append(user, raw, when=now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored, result.truncated) == ("", 1, 1)
    letter = Letter.objects.get(mailbox=mailbox)
    assert letter.truncated
    assert len(bytes(letter.source.raw)) < 70 * 1024
    assert letter.text == "Всё во вложении."
    listed = [(item["name"], item["type"]) for item in letter.attachments]
    assert listed == [
        ("logo.png", "image/png"),
        ("plans.dwg", "application/octet-stream"),
        ("Счёт.pdf", "application/pdf"),
        ("Договор.doc", "application/msword"),
        ("attached letter.eml", "message/rfc822"),
    ]
    # The same as the parser lists when it reads the whole letter; base64
    # sizes are worked out from the encoded size, up to the two padding bytes.
    whole = parsing.parse(raw, 1000).attachments
    assert [(item["name"], item["type"]) for item in whole] == listed
    for item, expected in zip(letter.attachments, whole, strict=True):
        assert expected["size"] <= item["size"] <= expected["size"] + 2, item
    assert [item["size"] for item in whole] == [1024, 2_000_000, 5000, 21, len("The earlier letter.")]


def peak_memory_of_a_first_sync(server, letters: int) -> int:
    user, _ = server.account()
    mailbox = make_setup(name=f"Box{letters}", imap_port=server.port, imap_user=user).mailbox
    body = "x" * 50_000
    # Each from its own customer: attribution compares a letter with the
    # sender's earlier ones, which is not what this test measures.
    raws = [
        letter_bytes(to="info@shop.test", sender=f"client{n}@client.test", subject=f"L{n:02d}", body=body)
        for n in range(letters)
    ]
    server.append_many(user, raws, now_s() - timedelta(hours=1))
    tracemalloc.start()
    try:
        result = sync_mailbox(mailbox.pk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.error, result.stored) == ("", letters)
    return peak


@pytest.mark.imap
@pytest.mark.parametrize("in_child", [False, True], ids=["fetched in a thread", "fetched in a child process"])
def test_memory_stays_bounded_by_the_fetch_budget_whatever_the_mailbox_size(mail_server, db, settings, in_child):
    # In a child process, this process holds the batches handed over to it.
    settings.SYNC_FETCH_PROCESS_MIN_LETTERS = 1 if in_child else 10**6
    settings.IMAP_FETCH_BATCH = 50
    settings.IMAP_FETCH_BATCH_BYTES = 150_000  # two letters a batch
    # Both long enough for fetching to run ahead of storing as far as it may.
    small = peak_memory_of_a_first_sync(mail_server, 12)  # about 0.8 MB of letters
    large = peak_memory_of_a_first_sync(mail_server, 48)  # about 3.3 MB
    # How far fetching runs ahead of storing depends on the machine's load, so
    # the bound is absolute: four times the letters, not even twice the memory,
    # and far below holding them all.
    assert large < small * 2, (small, large)
    assert large < 48 * 68_000 * 0.6, large


@pytest.mark.imap
def test_the_whole_corpus_comes_through_imap_as_written(mail_server, account):
    import json

    user, _password, mailbox = account
    cases = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
    mail_server.append_many(user, [(CORPUS / c["file"]).read_bytes() for c in cases], now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", len(cases))
    assert result.malformed == sum(1 for case in cases if case.get("malformed"))
    by_uid = {letter.uid: letter for letter in Letter.objects.filter(mailbox=mailbox)}
    for uid, case in enumerate(cases, 1):
        if case.get("store_only"):
            continue  # Dovecot turns NUL bytes into 0x80 on APPEND: that letter is tested as stored
        assert (by_uid[uid].subject, by_uid[uid].sender_email) == (case["subject"], case["sender_email"]), case["file"]
        assert case["text"] in by_uid[uid].text, case["file"]
