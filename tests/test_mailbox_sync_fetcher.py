"""mailbox_sync: a large folder fetched and parsed in a child process, its
letters attributed on a thread of their own: the same letters and leads as
the one-process sync, the mailbox still unchanged, and every failure of the
child raised in the sync (with its kind), never a hang."""

import errno
import multiprocessing.context
import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync import events, imap, store
from mailbox_sync.fetcher import ChildFetch
from mailbox_sync.models import Letter
from mailbox_sync.services import sync_mailbox
from tests.factories import letter_bytes
from tests.test_mailbox_sync_connect import new_account


def fill(server, user, count: int) -> None:
    now = timezone.now().replace(microsecond=0)
    raws = [
        letter_bytes(to="info@shop.test", sender=f"Client {n % 4} <client{n % 4}@client.test>", subject=f"Letter {n}")
        for n in range(count)
    ]
    server.append_many(user, raws, [now - timedelta(minutes=90 - n) for n in range(count)])


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_child", [True, False])
def test_a_large_folder_gives_the_same_letters_and_leads_either_way(mail_server, settings, monkeypatch, in_child):
    user, _password, mailbox = new_account(mail_server)
    fill(mail_server, user, 30)
    settings.SYNC_FETCH_PROCESS_MIN_LETTERS = 1 if in_child else 10**6
    monkeypatch.setattr(store, "ATTRIBUTION_BATCH", 4)  # attribution batches follow each other
    before = mail_server.client(user)
    before.select_folder("INBOX", readonly=True)
    flags = before.get_flags(before.search("ALL"))

    result = sync_mailbox(mailbox.pk, batch=5)

    assert (result.error, result.stored, result.seen) == ("", 30, 30)
    letters = Letter.objects.filter(mailbox=mailbox)
    assert sorted(letters.values_list("subject", flat=True)) == sorted(f"Letter {n}" for n in range(30))
    assert not letters.filter(attributed_at__isnull=True).exists()
    # Four senders, each writing again within the repeat period: four leads,
    # each made by its sender's first letter (arrival order was kept).
    leads = Lead.objects.filter(project=mailbox.project)
    assert leads.count() == 4
    for lead in leads:
        first = letters.filter(lead=lead).order_by("received_at").first()
        assert first.subject in {"Letter 0", "Letter 1", "Letter 2", "Letter 3"}
    assert before.get_flags(before.search("ALL")) == flags  # read-only, PEEK: not even \Seen
    before.logout()


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_attribution_on_its_own_thread_starts_on_the_first_stored_batch(mail_server, settings, monkeypatch):
    """It does not wait for a few batches' worth before its first batch:
    the longest stage starts while the next letters are fetched."""
    user, _password, mailbox = new_account(mail_server)
    fill(mail_server, user, 30)
    settings.SYNC_FETCH_PROCESS_MIN_LETTERS = 1
    monkeypatch.setattr(store, "ATTRIBUTION_BATCH", 12)
    announced = []

    def listener(letter_ids):
        announced.append(len(letter_ids))

    events.subscribe_letters_stored(listener)
    try:
        result = sync_mailbox(mailbox.pk, batch=5)
    finally:
        events.unsubscribe(listener)

    assert (result.error, result.stored) == ("", 30)
    assert announced[0] == 5  # the first stored batch, alone
    assert sum(announced) == 30 and all(size >= 12 for size in announced[1:-1])
    assert Lead.objects.filter(project=mailbox.project).count() == 4


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_when_no_child_process_can_start_the_sync_fetches_in_a_thread(mail_server, settings, monkeypatch, caplog):
    user, _password, mailbox = new_account(mail_server)
    fill(mail_server, user, 12)
    settings.SYNC_FETCH_PROCESS_MIN_LETTERS = 1
    attempts = []

    def no_fork(process):
        attempts.append(process.name)
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "_Popen", staticmethod(no_fork))
    result = sync_mailbox(mailbox.pk, batch=5)

    assert attempts == ["mailbox-fetch"]
    assert "fetching in a thread" in caplog.text
    assert (result.error, result.stored, result.seen) == ("", 12, 12)
    letters = Letter.objects.filter(mailbox=mailbox)
    assert sorted(letters.values_list("subject", flat=True)) == sorted(f"Letter {n}" for n in range(12))
    assert not letters.filter(attributed_at__isnull=True).exists()


def child_fetch(account, produce, uidvalidity=None, prepare=None, preparers=1):
    _user, password, mailbox = account
    client_uidvalidity = uidvalidity
    if client_uidvalidity is None:
        with imap.connect(mailbox, password) as client:
            client_uidvalidity, _uidnext = imap.select_readonly(client, "INBOX")
    return ChildFetch(lambda: imap.connect(mailbox, password), "INBOX", client_uidvalidity, produce, prepare, preparers)


def in_another_process(batch):
    return (batch, os.getpid())


@pytest.mark.imap
@pytest.mark.parametrize("preparers", [1, 3])
def test_batches_are_prepared_in_processes_of_their_own_and_arrive_in_order(account, preparers):
    def produce(client):
        for n in range(7):
            yield (n, os.getpid())

    fetching = child_fetch(account, produce, prepare=in_another_process, preparers=preparers)
    with fetching as batches:
        got = list(batches)
    assert [fetched[0] for fetched, _preparer in got] == [0, 1, 2, 3, 4, 5, 6]
    fetcher, preparing = {fetched[1] for fetched, _preparer in got}, {preparer for _fetched, preparer in got}
    assert len(fetcher) == 1 and len(preparing) == preparers
    assert not fetcher & preparing and os.getpid() not in fetcher | preparing
    assert not any(process.is_alive() for process in [fetching._process, *fetching._preparers])


@pytest.mark.imap
def test_a_failure_of_the_fetching_child_passes_the_preparing_one_after_the_batches_before_it(account):
    def produce(client):
        yield "first"
        raise imap.SyncError("Connection to the server dropped", imap.Failure.DROPPED)

    got = []
    fetching = child_fetch(account, produce, prepare=str.upper, preparers=2)
    with pytest.raises(imap.SyncError) as raised, fetching as batches:
        got.extend(batches)
    assert got == ["FIRST"]
    assert (str(raised.value), raised.value.kind) == ("Connection to the server dropped", imap.Failure.DROPPED)


@pytest.mark.imap
def test_a_fetching_child_that_dies_behind_the_preparing_one_is_a_dropped_connection(account):
    def produce(client):
        yield "first"
        os._exit(3)

    got = []
    fetching = child_fetch(account, produce, prepare=str.upper, preparers=2)
    with pytest.raises(imap.SyncError) as raised, fetching as batches:
        got.extend(batches)
    assert got == ["FIRST"]
    assert raised.value.kind == imap.Failure.DROPPED and "exit code 3" in str(raised.value)


@pytest.mark.imap
def test_a_failing_preparation_fails_the_sync_and_leaves_no_child_behind(account):
    def produce(client):
        while True:
            yield "more"

    def prepare(batch):
        raise ValueError("cannot parse")

    fetching = child_fetch(account, produce, prepare=prepare, preparers=2)
    with pytest.raises(imap.SyncError) as raised, fetching as batches:
        list(batches)
    assert "ValueError: cannot parse" in str(raised.value)
    assert not any(process.is_alive() for process in [fetching._process, *fetching._preparers])


@pytest.mark.imap
def test_a_failure_in_the_child_is_raised_with_its_kind_after_the_batches_before_it(account):
    def produce(client):
        yield "first"
        raise imap.SyncError("Connection to the server dropped", imap.Failure.DROPPED)

    got = []
    with pytest.raises(imap.SyncError) as raised, child_fetch(account, produce) as batches:
        got.extend(batches)
    assert got == ["first"]
    assert (str(raised.value), raised.value.kind) == ("Connection to the server dropped", imap.Failure.DROPPED)


@pytest.mark.imap
def test_a_child_that_dies_without_a_word_is_a_dropped_connection_not_a_hang(account):
    def produce(client):
        yield "first"
        os._exit(3)

    got = []
    with pytest.raises(imap.SyncError) as raised, child_fetch(account, produce) as batches:
        got.extend(batches)
    assert got == ["first"]
    assert raised.value.kind == imap.Failure.DROPPED and "exit code 3" in str(raised.value)


@pytest.mark.imap
def test_a_folder_renumbered_before_the_child_opened_it_fails_the_sync(account):
    def produce(client):
        yield "never"

    with pytest.raises(imap.SyncError) as raised, child_fetch(account, produce, uidvalidity=1) as batches:
        list(batches)
    assert raised.value.kind == imap.Failure.PROTOCOL and "renumbered" in str(raised.value)


@pytest.mark.imap
def test_a_sync_that_stops_early_leaves_no_child_behind(account):
    def produce(client):
        while True:
            yield "more"

    fetching = child_fetch(account, produce)
    with fetching as batches:
        assert next(iter(batches)) == "more"
    assert not fetching._process.is_alive()


@pytest.mark.imap
def test_a_child_that_hangs_is_a_timeout_not_a_hang(account, settings):
    # The limit also covers the child's fork, login and first batch: a few
    # seconds, so that a loaded machine is not taken for a stuck child.
    settings.SYNC_FETCH_PROCESS_STALL_SECONDS = 5

    def produce(client):
        yield "first"
        time.sleep(60)  # stuck, e.g. on a lock inherited from the fork
        yield "never"

    got = []
    fetching = child_fetch(account, produce)
    with pytest.raises(imap.SyncError) as raised, fetching as batches:
        got.extend(batches)
    assert got == ["first"]
    assert raised.value.kind == imap.Failure.TIMEOUT and "sent nothing" in str(raised.value)
    assert not fetching._process.is_alive()
