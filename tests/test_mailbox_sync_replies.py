"""mailbox_sync: the Sent folder. The first reply to a lead (by In-Reply-To /
References, or to the same correspondent after the lead) gives the lead's
response time; nothing in Sent ever becomes a letter or a lead."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mailbox_sync.models import Letter, Mailbox, Reply
from mailbox_sync.selectors import response_times
from mailbox_sync.services import ingest_raw, sync_mailbox
from tests.factories import letter_bytes

pytestmark = pytest.mark.imap

CLIENT = "Ivan Petrov <ivan@client.test>"


def now_s():
    return timezone.now().replace(microsecond=0)


def reply_bytes(*, to="ivan@client.test", in_reply_to=None, subject="Re: Price list"):
    headers = {"In-Reply-To": in_reply_to, "References": in_reply_to} if in_reply_to else {}
    return letter_bytes(to=to, sender="Manager <info@shop.test>", subject=subject, body="Here it is.", headers=headers)


@pytest.fixture
def watching(account):
    user, password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(watch_sent=True)
    return user, password, Mailbox.objects.get(pk=mailbox.pk)


def resync(mailbox):
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    return sync_mailbox(mailbox.pk)


def test_the_first_reply_gives_the_leads_response_time(mail_server, watching):
    user, _password, mailbox = watching
    asked = now_s() - timedelta(hours=3)
    mail_server.append(
        user, letter_bytes(to="info@shop.test", sender=CLIENT, message_id="<q1@client.test>"), when=asked
    )
    mail_server.append(
        user, reply_bytes(in_reply_to="<q1@client.test>"), when=asked + timedelta(minutes=37), folder="Gesendet"
    )
    mail_server.append(
        user, reply_bytes(in_reply_to="<q1@client.test>", subject="Re: more"), when=asked + timedelta(hours=2),
        folder="Gesendet",
    )  # fmt: skip
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored, result.replies) == ("", 1, 2)
    lead = Letter.objects.get(mailbox=mailbox).lead
    assert lead is not None
    assert Reply.objects.filter(lead=lead).count() == 2
    assert response_times([lead.pk]) == {lead.pk: timedelta(minutes=37)}


def test_a_reply_without_thread_headers_counts_when_it_goes_to_the_correspondent_after_the_lead(mail_server, watching):
    user, _password, mailbox = watching
    asked = now_s() - timedelta(hours=3)
    mail_server.append(
        user, reply_bytes(to="Ivan <IVAN@client.test>"), when=asked - timedelta(hours=1), folder="Gesendet"
    )
    mail_server.append(user, letter_bytes(to="info@shop.test", sender=CLIENT), when=asked)
    mail_server.append(
        user, reply_bytes(to="Ivan <IVAN@client.test>"), when=asked + timedelta(minutes=5), folder="Gesendet"
    )
    assert sync_mailbox(mailbox.pk).replies == 2
    lead = Letter.objects.get(mailbox=mailbox).lead
    before, after = Reply.objects.order_by("sent_at")
    assert (before.lead, after.lead) == (None, lead)  # a reply before the lead answers nothing
    assert response_times([lead.pk]) == {lead.pk: timedelta(minutes=5)}


def test_a_reply_to_someone_else_answers_no_lead(mail_server, watching):
    user, _password, mailbox = watching
    asked = now_s() - timedelta(hours=3)
    mail_server.append(user, letter_bytes(to="info@shop.test", sender=CLIENT), when=asked)
    mail_server.append(
        user, reply_bytes(to="supplier@other.test"), when=asked + timedelta(minutes=5), folder="Gesendet"
    )
    assert sync_mailbox(mailbox.pk).replies == 1
    assert Reply.objects.get().lead is None
    assert response_times([Letter.objects.get().lead_id]) == {}


def test_nothing_in_sent_becomes_a_letter_and_replies_are_read_once(mail_server, watching):
    user, _password, mailbox = watching
    mail_server.append(user, reply_bytes(), when=now_s() - timedelta(hours=1), folder="Gesendet")
    assert sync_mailbox(mailbox.pk).replies == 1
    assert resync(mailbox).replies == 0
    mail_server.append(user, reply_bytes(subject="Re: again"), when=now_s() - timedelta(minutes=1), folder="Gesendet")
    assert resync(mailbox).replies == 1
    assert not Letter.objects.exists()
    assert Reply.objects.count() == 2


def test_the_sent_folder_is_found_by_its_name_without_special_use_flags(mail_server, watching):
    user, _password, mailbox = watching
    asked = now_s() - timedelta(hours=2)
    mail_server.append(
        user, letter_bytes(to="info@shop.test", sender=CLIENT, message_id="<q2@client.test>"), when=asked
    )
    mail_server.append(
        user, reply_bytes(in_reply_to="<q2@client.test>"), when=asked + timedelta(hours=1), folder="Отправленные"
    )
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.replies) == ("", 1)
    assert Reply.objects.get().folder == "Отправленные"


def test_a_reply_stored_before_its_lead_existed_is_matched_by_a_later_sync(mail_server, watching):
    user, _password, mailbox = watching
    asked = now_s() - timedelta(hours=2)
    mail_server.append(
        user, reply_bytes(in_reply_to="<late@client.test>"), when=asked + timedelta(minutes=20), folder="Gesendet"
    )
    sync_mailbox(mailbox.pk)
    assert Reply.objects.get().lead is None
    # The enquiry reaches the system afterwards (here from a file).
    ingest_raw(
        mailbox=mailbox,
        raw=letter_bytes(to="info@shop.test", sender=CLIENT, message_id="<late@client.test>"),
        received_at=asked,
    )
    resync(mailbox)
    lead = Letter.objects.get(mailbox=mailbox).lead
    assert Reply.objects.get().lead == lead
    assert response_times([lead.pk]) == {lead.pk: timedelta(minutes=20)}


def test_watching_sent_without_a_sent_folder_says_so_but_reads_the_letters(mail_server, watching):
    user, _password, mailbox = watching
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert result.stored == 1
    assert "Sent folder not found" in Mailbox.objects.get(pk=mailbox.pk).last_error
