"""A letter is never dropped: the same letter seen twice is one letter (the
same Message-ID and content), a reused Message-ID with other content is
another letter, flagged, attributed on its own; threads do not join an
unrelated lead through a reused Message-ID alone."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from attribution.batch import attribute_letters
from attribution.models import Lead
from mailbox_sync.identity import content_digest
from mailbox_sync.models import Letter, LetterCopy, Mailbox, Reply
from mailbox_sync.replies import lead_answered
from mailbox_sync.services import ingest_raw, store_letter, sync_mailbox
from projects.models import Membership
from substitution.models import Lease
from tests.factories import letter_bytes, make_setup, minutes
from tracker.models import Channel, Session, Visitor

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
REUSED = "<form-1@crm.test>"

# --- The content digest -----------------------------------------------------------


def test_the_digest_leaves_out_the_headers_servers_add_on_delivery():
    raw = letter_bytes(to="info@shop.test", message_id=REUSED, date=T0)
    delivered = (
        b"Return-Path: <ivan@client.test>\r\nDelivered-To: info+k7m2@shop.test\r\n"
        b"Received: from mx.client.test\r\n\tby mx.shop.test; Thu, 31 Jul 2025 12:00:01 +0000\r\n"
        b"X-Original-To: info+k7m2@shop.test\r\nX-Spam-Status: No, score=0.1\r\n"
        b"ARC-Seal: i=1; a=rsa-sha256; cv=none\r\n"
    ) + raw
    assert content_digest(delivered) == content_digest(raw)
    assert content_digest(raw.replace(b"\n", b"\r\n")) == content_digest(raw.replace(b"\r\n", b"\n"))
    assert content_digest(raw + b"\r\n\r\n") == content_digest(raw)


def test_the_digest_tells_apart_letters_that_share_only_their_message_id():
    one = letter_bytes(to="info@shop.test", message_id=REUSED, date=T0)
    assert content_digest(one) != content_digest(one.replace(b"price list", b"price  list"))
    assert content_digest(one) != content_digest(one.replace(b"Ivan Petrov", b"Olga Petrova"))
    assert content_digest(one) != content_digest(b"X-Mailer: a\r\n" + one)
    assert content_digest(b"\xff\xfe garbage") != content_digest(b"\xff\xfe other garbage")


# --- Storing ------------------------------------------------------------------------


@pytest.fixture
def setup(db):
    return make_setup(original="info@shop.test", pool_size=5)


def test_a_reused_message_id_with_other_text_is_stored_and_both_letters_are_flagged(setup):
    first = store_letter(
        mailbox=setup.mailbox,
        raw=letter_bytes(to="info@shop.test", message_id=REUSED, date=T0, body="One"),
        received_at=T0,
    )
    second = store_letter(
        mailbox=setup.mailbox,
        raw=letter_bytes(to="info@shop.test", message_id=REUSED, date=T0, body="Two"),
        received_at=T0 + minutes(1),
    )
    assert first is not None and second is not None
    assert set(Letter.objects.values_list("text", "message_id_reused")) == {("One", True), ("Two", True)}


def test_a_message_id_reused_in_another_mailbox_of_the_project_is_flagged_but_a_copy_there_is_not(setup):
    other = Mailbox.objects.create(project=setup.project, name="Sales", host="127.0.0.1", username="sales@example.com")
    raw = letter_bytes(to="info@shop.test", message_id=REUSED, date=T0)
    store_letter(mailbox=setup.mailbox, raw=raw, received_at=T0)
    store_letter(mailbox=other, raw=raw, received_at=T0)
    assert Letter.objects.filter(message_id_reused=True).count() == 0
    store_letter(mailbox=other, raw=raw.replace(b"Hello!", b"Good day!"), received_at=T0)
    assert Letter.objects.filter(message_id_reused=True).count() == 3
    elsewhere = make_setup(name="Elsewhere")
    store_letter(mailbox=elsewhere.mailbox, raw=raw.replace(b"Hello!", b"Hi!"), received_at=T0)
    assert not Letter.objects.get(mailbox=elsewhere.mailbox).message_id_reused


# --- ingest_eml ---------------------------------------------------------------------


def ingest(mailbox_id, *paths) -> str:
    out = io.StringIO()
    call_command("ingest_eml", "--mailbox", str(mailbox_id), *[str(p) for p in paths], stdout=out)
    return out.getvalue()


def test_ingest_eml_of_the_same_file_twice_keeps_one_letter_and_records_the_copy(setup, tmp_path):
    path = tmp_path / "a.eml"
    path.write_bytes(letter_bytes(to="info@shop.test", message_id=REUSED, date=T0))
    first = ingest(setup.mailbox.pk, path)
    letter = Letter.objects.get()
    assert f"a.eml: stored (letter {letter.pk}" in first
    again = ingest(setup.mailbox.pk, path)
    assert f"a.eml: same letter already stored (letter {letter.pk})" in again
    assert "0 new letters" in again
    assert Letter.objects.count() == 1
    assert Lead.objects.count() == 1
    copy = LetterCopy.objects.get()
    assert (copy.letter_id, copy.origin, copy.uid) == (letter.pk, Letter.Origin.FILE, None)


def test_ingest_eml_of_two_files_sharing_a_message_id_keeps_both_and_says_it_was_reused(setup, tmp_path):
    one, two = tmp_path / "one.eml", tmp_path / "two.eml"
    one.write_bytes(letter_bytes(to="info@shop.test", message_id=REUSED, date=T0, subject="Order 1"))
    two.write_bytes(
        letter_bytes(to="info@shop.test", message_id=REUSED, date=T0, subject="Order 2", sender="olga@other.test")
    )
    output = ingest(setup.mailbox.pk, one, two)
    first = Letter.objects.get(subject="Order 1")
    second = Letter.objects.get(subject="Order 2")
    assert f"one.eml: stored (letter {first.pk}" in output
    assert f"two.eml: stored; Message-ID reused by letter {first.pk} (letter {second.pk}" in output
    assert "2 new letters" in output
    assert first.message_id_reused and second.message_id_reused
    assert first.lead_id != second.lead_id and None not in (first.lead_id, second.lead_id)


# --- Threads through a reused Message-ID -------------------------------------------------


def visit(site, address, vid, source, at):
    """A visitor from `source` who held `address` from an hour before `at` until after it."""
    person = Visitor.objects.create(site=site, vid=vid, created_at=at - timedelta(hours=1), last_seen_at=at)
    Session.objects.create(
        visitor=person, started_at=at - timedelta(hours=1), last_seen_at=at, channel=Channel.REFERRAL, source=source
    )
    Lease.objects.create(
        pool=address.pool,
        address=address,
        visitor=person,
        started_at=at - timedelta(hours=1),
        last_activity_at=at,
        expires_at=at + minutes(30),
        released_at=at + minutes(30),
        end_reason=Lease.EndReason.EXPIRED,
    )
    return person


def thread_letters(setup):
    """Ivan's enquiry and Olga's, both sent by one CRM form that reuses its
    Message-ID, then Ivan's reply and a stranger's letter naming that ID."""
    ivan_to, olga_to = setup.pool.addresses.order_by("id")[:2]
    visit(setup.site, ivan_to, "ivan", "yandex", T0)
    visit(setup.site, olga_to, "olga", "google", T0 + minutes(5))
    return [
        (T0, letter_bytes(to=ivan_to.email, message_id=REUSED, date=T0, subject="Ivan's order")),
        (
            T0 + minutes(5),
            letter_bytes(
                to=olga_to.email, sender="olga@other.test", message_id=REUSED, date=T0, subject="Olga's order"
            ),
        ),
        (
            T0 + timedelta(days=3),
            letter_bytes(
                to="info@shop.test", subject="Re: Ivan's order", headers={"In-Reply-To": REUSED, "References": REUSED}
            ),
        ),
        (
            T0 + timedelta(days=3, minutes=1),
            letter_bytes(
                to="info@shop.test", sender="petr@third.test", subject="Re: ?", headers={"In-Reply-To": REUSED}
            ),
        ),
    ]


def assert_threads(setup):
    leads = {letter.subject: letter.lead for letter in Letter.objects.select_related("lead")}
    assert leads["Ivan's order"].source == "yandex"
    assert leads["Olga's order"].source == "google"
    assert leads["Re: Ivan's order"] == leads["Ivan's order"]
    stranger = leads["Re: ?"]
    assert stranger not in (leads["Ivan's order"], leads["Olga's order"])
    assert Lead.objects.count() == 3


def test_a_reply_naming_a_reused_message_id_joins_the_lead_of_the_same_correspondent(setup):
    for at, raw in thread_letters(setup):
        ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=at)
    assert_threads(setup)


def test_a_batch_joins_threads_through_a_reused_message_id_as_letter_by_letter_does(setup):
    ids = [
        store_letter(mailbox=setup.mailbox, raw=raw, received_at=at).pk
        for at, raw in thread_letters(setup)  # stored first, then attributed together
    ]
    attribute_letters(ids)
    assert_threads(setup)


def test_a_sent_reply_naming_a_reused_message_id_answers_the_lead_of_its_recipient(setup):
    for at, raw in thread_letters(setup)[:2]:
        ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=at)
    olga = Letter.objects.get(subject="Olga's order").lead_id
    reply = Reply(in_reply_to=REUSED, references=[REUSED], recipients=["olga@other.test"], sent_at=T0 + minutes(20))
    assert lead_answered(setup.project.pk, reply) == olga
    to_nobody = Reply(in_reply_to=REUSED, references=[], recipients=["nobody@else.test"], sent_at=T0 + minutes(20))
    assert lead_answered(setup.project.pk, to_nobody) is None


def test_a_message_id_of_one_letter_still_joins_whoever_replies(setup):
    ingest_raw(
        mailbox=setup.mailbox,
        raw=letter_bytes(to="info@shop.test", message_id="<only@client.test>", date=T0),
        received_at=T0,
    )
    colleague = ingest_raw(
        mailbox=setup.mailbox,
        raw=letter_bytes(to="info@shop.test", sender="boss@client.test", headers={"In-Reply-To": "<only@client.test>"}),
        received_at=T0 + timedelta(days=2),
    )
    assert Lead.objects.count() == 1
    assert colleague.lead_id == Lead.objects.get().pk


# --- Shown to a person ------------------------------------------------------------------


def test_admin_and_the_journal_show_the_reused_flag_and_where_else_a_letter_was_seen(setup, client, django_user_model):
    raw = letter_bytes(to="info@shop.test", message_id=REUSED, date=T0)
    letter = ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=T0)
    store_letter(mailbox=setup.mailbox, raw=raw, received_at=T0, folder="Заявки", uidvalidity=3, uid=17)
    ingest_raw(mailbox=setup.mailbox, raw=raw.replace(b"Hello!", b"Hi!"), received_at=T0 + minutes(1))
    ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject="Unrelated"), received_at=T0)
    user = django_user_model.objects.create_user("manager", password="pw-12345-long", is_staff=True)
    Membership.objects.create(user=user, project=setup.project, role=Membership.Role.MANAGER)
    client.force_login(user)
    page = client.get(reverse("admin:mailbox_sync_letter_change", args=[letter.pk])).content.decode()
    assert "Message-ID reused" in page
    assert "Заявки" in page and "17" in page
    changelist = client.get(reverse("admin:mailbox_sync_letter_changelist") + "?message_id_reused__exact=1")
    assert {row.pk for row in changelist.context["cl"].result_list} == set(
        Letter.objects.filter(message_id=REUSED).values_list("pk", flat=True)
    )
    assert Letter.objects.count() == 3  # the copy is not a letter; the unrelated one is not flagged
    journal = client.get(reverse("journal:lead", args=[letter.lead_id])).content.decode()
    assert "Message-ID reused" in journal
    assert "Заявки" in journal


# --- Over IMAP, against Dovecot -------------------------------------------------------------


def now_s():
    return timezone.now().replace(microsecond=0)


@pytest.mark.imap
def test_five_letters_sharing_a_message_id_become_five_letters_with_their_own_sources(mail_server, account):
    user, _password, mailbox = account
    setup_pool = mailbox.project.pools.get()
    site = mailbox.project.sites.get()
    at = now_s() - timedelta(hours=1)
    sources = ["yandex", "google", "vk", "avito", "newsletter"]
    addresses = list(setup_pool.addresses.order_by("id")[:5])
    for n, (address, source) in enumerate(zip(addresses, sources, strict=True)):
        visit(site, address, f"v{n}", source, at + minutes(n))
        raw = letter_bytes(
            to=address.email, sender=f"client{n}@client.test", message_id=REUSED, date=at, body=f"Enquiry {n}"
        )
        mail_server.append(user, raw, when=at + minutes(n))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.seen, result.stored, result.copies) == ("", 5, 5, 0)
    letters = list(Letter.objects.filter(mailbox=mailbox).select_related("lead").order_by("received_at"))
    assert [letter.text for letter in letters] == [f"Enquiry {n}" for n in range(5)]
    assert [letter.lead.source for letter in letters] == sources
    assert len({letter.lead_id for letter in letters}) == 5
    assert all(letter.message_id_reused for letter in letters)


@pytest.mark.imap
def test_the_same_letter_in_two_watched_folders_is_one_letter_seen_in_both(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folders="INBOX,Orders")
    raw = letter_bytes(to="info@shop.test", message_id=REUSED, date=now_s())
    at = now_s() - timedelta(minutes=30)
    mail_server.append(user, raw, when=at)
    mail_server.append(user, raw, when=at + minutes(1), folder="Orders")
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.seen, result.stored, result.copies) == ("", 2, 1, 1)
    letter = Letter.objects.get(mailbox=mailbox)
    assert (letter.folder, letter.uid) == ("INBOX", 1)
    copy = LetterCopy.objects.get(letter=letter)
    assert (copy.folder, copy.received_at) == ("Orders", at + minutes(1))
    assert Lead.objects.filter(project=mailbox.project).count() == 1
    # Read again: every UID was read once, as a letter or as a copy.
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    mailbox.folder_states.all().delete()
    again = sync_mailbox(mailbox.pk)
    assert (again.error, again.seen, again.stored, again.copies) == ("", 2, 0, 0)
    assert LetterCopy.objects.count() == 1
