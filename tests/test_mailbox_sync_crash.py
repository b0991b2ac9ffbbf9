"""mailbox_sync: exactly once through crashes, and one sync per mailbox.

The crash test runs the real command in a subprocess and kills it (SIGKILL)
again and again while it reads about 500 letters from Dovecot, at moments
drawn from a fixed seed; at each kill it checks that the run fell mid-sync
and that nothing below the high-water mark was skipped. At the end every
letter is stored, and attributed, exactly once.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.models import FolderState, Letter, Mailbox
from mailbox_sync.services import BUSY, claim, sync_mailbox
from tests.factories import letter_bytes, make_setup

ROOT = Path(__file__).resolve().parent.parent
SEED = 20250731
LETTERS = 500
KILLS = 10


def now_s():
    return timezone.now().replace(microsecond=0)


def database_url() -> str:
    """The test database, for a subprocess to use."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def start_sync(mailbox_id: int, batch: int) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    return subprocess.Popen(
        [sys.executable, "manage.py", "sync_mailboxes", "--mailbox", str(mailbox_id), "--batch", str(batch)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def no_sync_running(mailbox_id: int, wait: float = 5) -> bool:
    """True once no process (the killed sync's fetching child included)
    runs the sync of this mailbox."""
    wanted = f"sync_mailboxes\0--mailbox\0{mailbox_id}\0".encode()
    deadline = time.monotonic() + wait
    while True:
        running = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if wanted in cmdline and state != "Z":
                running.append(pid)
        if not running:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def stored_uids(mailbox) -> set[int]:
    return set(Letter.objects.filter(mailbox=mailbox).values_list("uid", flat=True))


@pytest.mark.slow
@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_a_sync_killed_again_and_again_stores_every_letter_exactly_once(mail_server):
    rng = random.Random(SEED)
    user, _ = mail_server.account()
    mailbox = make_setup(imap_port=mail_server.port, imap_user=user, pool_size=3).mailbox
    now = now_s()
    raws, dates, wanted = [], [], set()
    for n in range(LETTERS + LETTERS // 10):
        old = n % 11 == 10  # among them, letters older than the first sync's window
        raws.append(
            letter_bytes(
                to=f"info+{'abc'[n % 3]}@shop.test",
                sender=f"Client {n} <client{n}@client.test>",
                subject=f"Letter {n}",
                message_id=f"<crash-{n}@client.test>",
            )
        )
        dates.append(now - (timedelta(days=2) if old else timedelta(minutes=90 - n // 10)))
        if not old:
            wanted.add(n + 1)  # UIDs follow the order of appending
    mail_server.append_many(user, raws, dates)
    assert len(wanted) == LETTERS

    # Where the kills fall: spread over the whole sync, never too near its end
    # (the last batches of a few dozen letters take only milliseconds).
    targets = sorted(rng.sample(range(1, LETTERS - 150), KILLS))
    for kill, target in enumerate(targets):
        before = stored_uids(mailbox)
        process = start_sync(mailbox.pk, batch=10)
        deadline = time.monotonic() + 60
        while Letter.objects.filter(mailbox=mailbox).count() < max(target, len(before) + 1):
            assert process.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))  # somewhere in fetching, storing or attributing the next batch
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
        assert no_sync_running(mailbox.pk)  # its fetching process died with it
        after = stored_uids(mailbox)
        assert len(before) < len(after) < LETTERS, f"kill {kill + 1} did not fall mid-sync"
        assert after <= wanted  # never a letter older than the window
        state = FolderState.objects.get(mailbox=mailbox)
        assert {uid for uid in wanted if uid <= state.last_uid} <= after  # nothing skipped below the mark

    final = start_sync(mailbox.pk, batch=10)
    assert final.wait(timeout=120) == 0
    letters = Letter.objects.filter(mailbox=mailbox)
    assert letters.count() == LETTERS
    assert stored_uids(mailbox) == wanted
    unattributed = list(letters.filter(attributed_at__isnull=True).values_list("uid", "attribution_error")[:3])
    assert not unattributed
    # One lead per letter (each has its own sender): no letter was attributed twice.
    assert Lead.objects.filter(project=mailbox.project).count() == LETTERS
    assert letters.filter(lead__isnull=False).values("lead").distinct().count() == LETTERS
    assert Mailbox.objects.get(pk=mailbox.pk).state == Mailbox.State.OK


# --- One sync per mailbox -----------------------------------------------------------


@pytest.fixture
def mailbox(db):
    return make_setup().mailbox


def held_by(mailbox, owner: str, minutes: int = 10):
    Mailbox.objects.filter(pk=mailbox.pk).update(
        claimed_until=timezone.now() + timedelta(minutes=minutes), claimed_by=owner, claim_token="someone-else"
    )


def test_a_second_claim_is_refused_while_the_first_holds(mailbox):
    now = timezone.now()
    token = claim(mailbox.pk, now)
    assert token
    assert claim(mailbox.pk, now + timedelta(minutes=1)) is None
    mailbox.refresh_from_db()
    assert mailbox.claim_token == token
    assert claim(mailbox.pk, mailbox.claimed_until + timedelta(seconds=1))


def test_a_claim_left_by_a_dead_process_on_this_host_is_taken_over(mailbox):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    held_by(mailbox, f"{socket.gethostname()}:{dead.pid}")
    assert claim(mailbox.pk, timezone.now())


@pytest.mark.parametrize("owner", ["other-host:12345", f"{socket.gethostname()}:{os.getppid()}"])
def test_a_claim_of_a_live_process_or_another_host_is_respected_until_it_expires(mailbox, owner):
    held_by(mailbox, owner)
    result = sync_mailbox(mailbox.pk)
    assert result.error == BUSY
    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert (stored.claim_token, stored.state) == ("someone-else", Mailbox.State.NEW)
    assert claim(mailbox.pk, timezone.now() + timedelta(minutes=11))


@pytest.mark.imap
def test_a_sync_whose_claim_was_taken_stops_and_leaves_the_mailbox_to_the_new_holder(mail_server, account):
    user, _password, mailbox = account
    mail_server.append_many(
        user, [letter_bytes(to="info@shop.test", subject=f"L{n}") for n in range(6)], now_s() - timedelta(hours=1)
    )

    class TakeOverAfterFirstBatch:
        def start(self, folder, total):
            pass

        def advance(self, count):
            held_by(mailbox, "other-host:1")  # another worker, after this one's claim lapsed

    result = sync_mailbox(mailbox.pk, progress=TakeOverAfterFirstBatch(), batch=2)
    assert (result.error, result.stored) == (BUSY, 2)  # the second batch was not committed
    stored = Mailbox.objects.get(pk=mailbox.pk)
    assert (stored.claim_token, stored.claimed_by, stored.state) == ("someone-else", "other-host:1", "new")
    assert Letter.objects.filter(mailbox=mailbox).count() == 2


@pytest.mark.imap
@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_mailbox_store_each_letter_once(mail_server):
    user, _ = mail_server.account()
    mailbox = make_setup(imap_port=mail_server.port, imap_user=user).mailbox
    mail_server.append_many(
        user, [letter_bytes(to="info@shop.test", subject=f"L{n}") for n in range(20)], now_s() - timedelta(hours=1)
    )
    start, results = threading.Barrier(2), []

    def worker():
        start.wait()
        try:
            results.append(sync_mailbox(mailbox.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(result.stored for result in results) == [0, 20]
    assert [result.error for result in results].count(BUSY) == 1
    assert Letter.objects.filter(mailbox=mailbox).count() == 20
