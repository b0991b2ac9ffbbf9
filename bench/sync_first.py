"""Our first sync of a mailbox against a bare loop, measured in one run.

    .venv/bin/python bench/sync_first.py [--letters 5000] [--rounds 3]

Starts its own Dovecot (as the tests do) and appends the letters to one
account: Russian enquiries in UTF-8, windows-1251 and koi8-r, plain, quoted-
printable and base64, a fifth of them multipart with HTML and an attachment,
to the pool's tracked addresses, each held by a visitor with a session.

- bare: imapclient fetches the letters (BODY.PEEK[] in batches of 200) and
  mail-parser parses each one; nothing is stored.
- ours: `sync_mailbox`, the first sync: fetch, parse, store, attribute.

Each round runs both; ours starts from a mailbox that was never synced. The
ratio of letters per second (ours / bare) is the figure; absolute times are
printed only for context. The sync reports where its time went, in three
parts that overlap: fetching and parsing (in child processes, one
fetching and SYNC_PARSE_PROCESSES parsing, as for any folder with
SYNC_FETCH_PROCESS_MIN_LETTERS letters to read or more),
storing (the sync's thread: a COPY per batch) and attribution (the
attribution app's `attribute_letters`, a batch of 500 letters or more at a
time, up to 2,000 when batches queue up, on a thread of its own); the
slowest of them bounds the sync. The CPU
share is that of the sync's own process (the children apart); the CPU a letter
takes is shown for the sync's process, the fetching and parsing processes and
this database's PostgreSQL backends (Dovecot's apart), and for the bare loop's
process. On a loaded machine the ratio follows the total CPU more than the
overlap: the last line's CPU figures are the ones to compare. PostgreSQL and
Redis as in the tests, in a throwaway database `emailtrack_bench_sync`,
recreated each run. The machine is shared: run it two or three times and
read the ratios, which compare runs made moments apart.
"""

import argparse
import base64
import cProfile
import multiprocessing
import os
import pstats
import quopri
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "emailtrack_bench_sync"
os.environ["DATABASE_URL"] = f"postgres://postgres:postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

SUBJECTS = ["Заявка на кирпич", "Прошу выставить счёт", "Вопрос по доставке", "Нужен прайс", "Сколько стоит?"]
BODIES = [
    "Добрый день! Подскажите, пожалуйста, цену на облицовочный кирпич и сроки доставки в Тверь.",
    "Здравствуйте. Прошу выставить счёт на 3 поддона кирпича М150. Реквизиты во вложении.",
    "Интересует газобетон, 40 кубов. Возможна ли доставка в выходные? Спасибо.",
]


def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def letter(n: int, to: str, rng: random.Random) -> bytes:
    subject, body = (
        rng.choice(SUBJECTS),
        rng.choice(BODIES) + f"\n\nЗаказ {n}.\n" + "Текст письма. " * rng.randint(5, 200),
    )
    charset = rng.choice(["utf-8", "utf-8", "windows-1251", "koi8-r"])
    encoding = rng.choice(["8bit", "quoted-printable", "base64"])
    data = body.encode(charset)
    payload = {"8bit": data, "quoted-printable": quopri.encodestring(data), "base64": base64.encodebytes(data)}[
        encoding
    ]
    name = base64.b64encode(f"Клиент {n}".encode()).decode()
    head = (
        f"From: =?utf-8?B?{name}?= <client{n % 4000}@client.test>\r\nTo: {to}\r\n"
        f"Subject: =?utf-8?B?{base64.b64encode(subject.encode()).decode()}?=\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <bench-{n}@client.test>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    text_part = (
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode()
        + payload
    )
    if n % 5:
        return head + text_part
    attachment = base64.encodebytes(rng.randbytes(8000))
    return (
        head
        + b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        + b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\n'
        + text_part
        + b"\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>"
        + body[:300].encode()
        + b"</p>\r\n--a--\r\n--m\r\nContent-Type: application/pdf\r\n"
        + b'Content-Disposition: attachment; filename="rekvizity.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + attachment
        + b"--m--\r\n"
    )


def bare_loop(server, user) -> int:
    import mailparser
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=60)
    client.login(user, "secret")
    client.select_folder("INBOX", readonly=True)
    uids = client.search("ALL")
    parsed = 0
    for start in range(0, len(uids), 200):
        response = client.fetch(uids[start : start + 200], ["BODY.PEEK[]"])
        for data in response.values():
            mailparser.parse_from_bytes(data[b"BODY[]"])
            parsed += 1
    client.logout()
    return parsed


class BackendCpu:
    """CPU seconds used by this database's PostgreSQL backends while running:
    /proc read every 50 ms (a backend's title names its database), so a
    backend that ends between two readings loses at most its last 50 ms.
    The readings are taken by a process of its own, started before the sync:
    a thread of the sync's process would take the interpreter from the sync
    it measures (a reading of /proc costs about a millisecond)."""

    def __enter__(self):
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._ready = context.Event()
        receiving, self._sending = context.Pipe(duplex=False)
        self._receiving = receiving
        self._process = context.Process(target=_sample_backends, args=(self._stop, self._ready, self._sending))
        self._process.start()
        self._ready.wait()  # the first reading is taken before the sync starts
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        ticks = self._receiving.recv()
        self._process.join()
        self.seconds = ticks / os.sysconf("SC_CLK_TCK")


def _backend_ticks() -> dict[int, int]:
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not title.startswith(b"postgres: ") or DATABASE.encode() not in title:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(pid)] = int(fields[11]) + int(fields[12])  # utime + stime
    return found


def _sample_backends(stop, ready, sending) -> None:
    """BackendCpu's process: the backends' CPU ticks from the first reading
    to the last, sent back once `stop` is set."""
    start = _backend_ticks()
    ticks = dict(start)
    ready.set()
    while not stop.wait(0.05):
        ticks.update(_backend_ticks())
    ticks.update(_backend_ticks())
    sending.send(sum(t - start.get(pid, 0) for pid, t in ticks.items()))


def reset(mailbox):
    """The mailbox as before its first sync. The bench's own database is
    thrown away anyway: its letters and leads go by TRUNCATE (a Django
    delete of 5,000 letters with their cascades takes minutes on a loaded
    machine and leaves dead rows behind for the next round to wade through)."""
    from django.db import connection

    from attribution.models import Lead
    from mailbox_sync.models import FolderState, Letter, Mailbox

    tables = [Letter._meta.db_table, Lead._meta.db_table]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(connection.ops.quote_name(t) for t in tables)} CASCADE")
    FolderState.objects.filter(mailbox=mailbox).delete()
    Mailbox.objects.filter(pk=mailbox.pk).update(sync_horizon=None, next_sync_at=None, state=Mailbox.State.NEW)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print where our sync spends its time")
    parser.add_argument("--profile-sort", default="cumulative", help="cumulative or tottime")
    args = parser.parse_args()
    recreate_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from mailbox_sync.models import Letter
    from mailbox_sync.services import sync_mailbox
    from substitution.services import lease_acquire
    from tests.factories import make_setup
    from tests.test_mailbox_sync_connect import start_mail_server, stop_mail_server
    from tracker.models import Channel, Session, Visitor

    server, process = start_mail_server()
    try:
        user, _ = server.account()
        setup = make_setup(pool_size=50, imap_port=server.port, imap_user=user)
        now = timezone.now()
        addresses = []
        for n in range(50):  # every tracked address leased to a visitor who came from an ad
            visitor = Visitor.objects.create(site=setup.site, vid=f"bench-{n}", created_at=now, last_seen_at=now)
            Session.objects.create(
                visitor=visitor,
                started_at=now - timedelta(hours=23),
                last_seen_at=now,
                channel=Channel.PAID,
                source="yandex",
            )
            addresses.append(lease_acquire(pool=setup.pool, visitor=visitor, now=now - timedelta(hours=23)).email)
        rng = random.Random(5)
        raws = [letter(n, rng.choice(addresses), rng) for n in range(args.letters)]
        dates = [now - timedelta(hours=20) + timedelta(seconds=10 * n) for n in range(args.letters)]
        server.append_many(user, raws, dates)
        size = sum(len(raw) for raw in raws)
        print(f"{args.letters} letters, {size / args.letters / 1024:.1f} KB on average, Dovecot on 127.0.0.1")

        bare, ours, totals, bare_cpu = [], [], [], []
        for round_ in range(args.rounds):
            start, cpu = time.perf_counter(), time.process_time()
            assert bare_loop(server, user) == args.letters
            bare.append(args.letters / (time.perf_counter() - start))
            bare_cpu.append((time.process_time() - cpu) / args.letters * 1000)
            reset(setup.mailbox)
            profile = cProfile.Profile() if args.profile and round_ == 0 else None
            # Timed inside: the sampling process is started before and
            # reaped after (its own CPU is not counted among the children).
            with BackendCpu() as database:
                children = os.times()
                start, cpu = time.perf_counter(), time.process_time()
                if profile:
                    profile.enable()
                result = sync_mailbox(setup.mailbox.pk)
                if profile:
                    profile.disable()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                after = os.times()
            child_cpu = after.children_user + after.children_system - children.children_user - children.children_system
            ours.append(args.letters / elapsed)
            assert (result.error, result.stored) == ("", args.letters), result
            assert Letter.objects.filter(mailbox=setup.mailbox, lead__isnull=False).count() == args.letters
            print(
                f"round {round_ + 1}: bare {bare[-1]:,.0f} letters/s, ours {ours[-1]:,.0f} letters/s; "
                f"fetch+parse {result.fetch_seconds:.1f}s, store {result.store_seconds:.1f}s, "
                f"attribution {result.attribution_seconds:.1f}s "
                f"({result.attribution_seconds / args.letters * 1000:.1f} ms a letter), all overlapping in "
                f"{elapsed:.1f}s; the sync's process on the CPU {cpu / elapsed:.0%} of the time, "
                f"CPU a letter: the sync's process {cpu / args.letters * 1000:.2f} ms, "
                f"the fetching and parsing processes {child_cpu / args.letters * 1000:.2f} ms, "
                f"PostgreSQL {database.seconds / args.letters * 1000:.2f} ms; "
                f"all three {(cpu + child_cpu + database.seconds) / args.letters * 1000:.2f} ms"
            )
            totals.append((cpu + child_cpu + database.seconds) / args.letters * 1000)
            if profile:
                stats = pstats.Stats(profile).sort_stats(args.profile_sort)
                stats.print_stats(30)
                stats.print_callees("_sync_folder")
                stats.print_callees("batch.py")
        bare_median = statistics.median(bare)
        print(
            f"median: bare {bare_median:,.0f} letters/s, ours {statistics.median(ours):,.0f} letters/s: "
            f"ours/bare = {statistics.median(ours) / bare_median:.2f} (target at least 0.80); "
            f"rounds {', '.join(f'{o / b:.2f}' for o, b in zip(ours, bare, strict=True))}; "
            f"CPU a letter: ours (the sync's process, its children, PostgreSQL) {statistics.median(totals):.2f} ms, "
            f"bare {statistics.median(bare_cpu):.2f} ms"
        )
    finally:
        stop_mail_server(server, process)


if __name__ == "__main__":
    main()
