"""From a letter's arrival to its lead, with the IMAP IDLE listener.

    .venv/bin/python bench/realtime.py [--letters 20] [--mailboxes 1]
    .venv/bin/python bench/realtime.py --mailboxes 1000

Starts its own Dovecot (limits raised in its config: connections per user
and IP, imap and login processes and clients, anvil, inotify fallback) and
`python manage.py listen_mailboxes` as a process of its own, then APPENDs
the letters one at a time, each to a random mailbox's INBOX, and times each
from the APPEND to its lead existing in PostgreSQL. The poll it replaces
takes up to SYNC interval (600 s by default) for the same.

With many mailboxes it also reports the listener process's memory (RSS),
its CPU while idle (all mailboxes listening, no letter arriving, measured
over --idle-seconds so that every connection's DONE / IDLE renewal falls
in it; and how much of it its event loop took, the rest being its database
and sync threads), and the time until every mailbox is listened to and its first sync
done. PostgreSQL and Redis as in the tests, in a throwaway database
`emailtrack_bench_realtime`, recreated each run.

The last line reads `letter to lead: median X s, p95 Y s`.
"""

import argparse
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATABASE = "emailtrack_bench_realtime"
os.environ["DATABASE_URL"] = f"postgres://postgres:postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"

DOVECOT_CONF = """\
instance_name = emailtrack-bench-{port}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u/Maildir
first_valid_uid = 1
default_login_user = nobody
default_internal_user = nobody
default_internal_group = nogroup
# A thousand accounts from one IP, each with its IDLE connection and a sync.
mail_max_userip_connections = 100
default_process_limit = 4000
default_client_limit = 8000
default_vsz_limit = 0
# Without an inotify watch left, Dovecot checks an idling folder this often.
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/mail/%u
}}
service imap-login {{
  chroot =
  service_count = 0
  process_min_avail = 2
  client_limit = 4000
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  # Many connections per process (each would otherwise be a process of its own).
  service_count = 0
  process_limit = 200
  client_limit = 25
}}
service auth {{
  client_limit = 8000
}}
service anvil {{
  chroot =
  client_limit = 8000
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def recreate_database():
    import psycopg

    with psycopg.connect("postgresql://postgres:postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dovecot() -> tuple[Path, int, subprocess.Popen]:
    root = Path(tempfile.mkdtemp(prefix="emailtrack-bench-dovecot-"))
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    root.chmod(0o755)
    shutil.chown(root / "mail", "nobody", "nogroup")
    port = free_port()
    (root / "dovecot.conf").write_text(DOVECOT_CONF.format(dir=root, port=port))
    process = subprocess.Popen(
        ["dovecot", "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return root, port, process
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("Dovecot did not start: " + (root / "dovecot.log").read_text()[-2000:])
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def loop_cpu_seconds(pid: int) -> float:
    """CPU of the process's main thread: the listener's event loop (the
    database and the syncs run on threads of their own)."""
    return cpu_seconds_of(Path(f"/proc/{pid}/task/{pid}/stat"))


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for(check, seconds: float, what: str, every: float = 0.02):
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"Timed out waiting for {what}")
        time.sleep(every)
    return value


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=20)
    parser.add_argument("--mailboxes", type=int, default=1)
    parser.add_argument("--idle-seconds", type=float, default=None, help="CPU measured over this (default: 2 pings)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up Dovecot and the listener
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Dovecot and the listener inherit it
    recreate_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import close_old_connections
    from django.utils import timezone
    from imapclient import IMAPClient

    call_command("migrate", verbosity=0)
    from mailbox_sync import conf
    from mailbox_sync.models import Letter, Listening, Mailbox
    from mailbox_sync.services import mailbox_set_password
    from substitution.services import lease_acquire
    from tests.factories import letter_bytes, make_setup
    from tracker.models import Channel, Session, Visitor

    root, port, dovecot = start_dovecot()
    listener = None
    try:
        setup = make_setup(imap_port=port, imap_user="box-0@bench.test", pool_size=5)
        template = setup.mailbox
        mailbox_set_password(template, "secret")
        Mailbox.objects.bulk_create(
            [
                Mailbox(
                    project=setup.project,
                    name=f"Box {n}",
                    host="127.0.0.1",
                    port=port,
                    security=Mailbox.Security.NONE,
                    username=f"box-{n}@bench.test",
                    password_encrypted=template.password_encrypted,
                )
                for n in range(1, args.mailboxes)
            ]
        )
        mailboxes = list(Mailbox.objects.order_by("id"))
        now = timezone.now()
        visitor = Visitor.objects.create(site=setup.site, vid="bench", created_at=now, last_seen_at=now)
        Session.objects.create(
            visitor=visitor, started_at=now - timedelta(minutes=5), last_seen_at=now, channel=Channel.PAID, source="ad"
        )
        address = lease_acquire(pool=setup.pool, visitor=visitor, now=now - timedelta(minutes=5)).email
        for mailbox in mailboxes:  # each account's Maildir exists before anyone listens
            client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
            client.login(mailbox.username, "secret")
            client.select_folder("INBOX", readonly=True)
            client.logout()
        print(f"{len(mailboxes)} mailboxes on Dovecot 127.0.0.1:{port}; ping every {conf.idle_ping_seconds():g} s")

        started = time.monotonic()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(root / "listener.log", "w")  # noqa: SIM115 - closed with the listener
        listener = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "listen_mailboxes", "--name", "bench"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def listening_count():
            close_old_connections()
            return Listening.objects.filter(state=Listening.State.LISTENING, listener="bench").count()

        wait_for(lambda: listening_count() == len(mailboxes), 600, "every mailbox listening", every=0.2)
        all_listening = time.monotonic() - started

        def synced():
            close_old_connections()
            return not Mailbox.objects.filter(last_sync_at__isnull=True).exists()

        wait_for(synced, 900, "every first sync", every=0.2)
        all_synced = time.monotonic() - started
        print(f"all {len(mailboxes)} listening after {all_listening:.1f} s; first syncs done after {all_synced:.1f} s")

        time.sleep(3)  # the last syncs' threads settle
        idle_seconds = args.idle_seconds or 2 * conf.idle_ping_seconds() + 5
        cpu, loop_cpu, at = cpu_seconds(listener.pid), loop_cpu_seconds(listener.pid), time.monotonic()
        time.sleep(idle_seconds)
        took = time.monotonic() - at
        idle_cpu = (cpu_seconds(listener.pid) - cpu) / took
        idle_loop_cpu = (loop_cpu_seconds(listener.pid) - loop_cpu) / took
        rss = rss_mb(listener.pid)
        print(
            f"listener while idle: CPU {idle_cpu:.2%} of a core over {idle_seconds:.0f} s "
            f"({idle_loop_cpu:.2%} its event loop, the rest its threads); RSS {rss:.0f} MB"
        )

        rng = random.Random(18)
        latencies = []
        for n in range(args.letters):
            mailbox = rng.choice(mailboxes)
            subject = f"Realtime {n}"
            raw = letter_bytes(to=address, subject=subject, sender=f"client{n}@client.test")
            client = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=30)
            client.login(mailbox.username, "secret")
            appended = time.monotonic()
            client.append("INBOX", raw)

            def lead(mailbox=mailbox, subject=subject):
                close_old_connections()
                return Letter.objects.filter(mailbox=mailbox, subject=subject, lead__isnull=False).exists()

            wait_for(lead, 120, f"the lead of letter {n}")
            latencies.append(time.monotonic() - appended)
            client.logout()
            print(f"letter {n + 1:2d} to {mailbox.username}: lead after {latencies[-1]:.2f} s")
            time.sleep(0.2)
        rss = max(rss, rss_mb(listener.pid))
        if len(mailboxes) > 1:
            print(
                f"{len(mailboxes)} mailboxes in one listener: RSS {rss:.0f} MB (target at most 300), "
                f"idle CPU {idle_cpu:.2%} of a core (target at most 2%), all listening after {all_listening:.1f} s"
            )
        print(f"poll: up to {setup.mailbox.sync_interval_minutes * 60} s from letter to lead")
        print(f"letter to lead: median {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s")
    finally:
        if listener is not None:
            listener.terminate()
            try:
                listener.wait(30)
            except subprocess.TimeoutExpired:
                listener.kill()
        dovecot.terminate()
        try:
            dovecot.wait(10)
        except subprocess.TimeoutExpired:
            dovecot.kill()
        shutil.rmtree(root, ignore_errors=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    main()
