"""Faults: PostgreSQL restarted under the service.

A PostgreSQL cluster of the test's own (initdb on a loopback port, so the
suite's server is never touched) serves gunicorn and the sync, which run as
production runs them, in subprocesses. The test restarts the cluster in the
middle of a burst of collects and in the middle of a sync of a few hundred
letters from Dovecot:
- collect answers 503 with Retry-After while the database is away (never a
  500 or a dropped connection) and 200 again after it, without a restart of
  gunicorn;
- the sync that lost its database fails cleanly; the next one stores every
  letter once and attributes each once."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from django.utils import timezone

from tests.conftest import free_port
from tests.factories import letter_bytes

ROOT = Path(__file__).resolve().parent.parent
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
# The server binaries of the PostgreSQL that make test installs (Debian keeps them per version).
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))
PG_BIN = PG_BINS[-1] if PG_BINS else Path("/nonexistent")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.imap,
    pytest.mark.skipif(not (PG_BIN / "initdb").exists(), reason="needs PostgreSQL's server binaries"),
]
LETTERS = 600

SETUP = """
import json
from django.utils import timezone
from substitution.services import lease_acquire
from tests.factories import make_setup
from tests.test_api_support import visitor_with_session
s = make_setup(imap_port={port}, imap_user={user!r}, imap_password={password!r})
person = visitor_with_session(s, source="newsletter", utm_source="newsletter", utm_campaign="autumn")
address = lease_acquire(pool=s.pool, visitor=person, now=timezone.now()).email
print(json.dumps({{"mailbox": s.mailbox.pk, "site": s.site.site_key, "address": address}}))
"""

COUNT = """
import json
from django.db.models import Count
from attribution.models import Lead
from mailbox_sync.models import Letter
letters = Letter.objects.all()
print(json.dumps({"letters": letters.count(), "uids": letters.values("uid").distinct().count(),
    "attributed": letters.filter(attributed_at__isnull=False).count(), "leads": Lead.objects.count(),
    "leads_with_one_letter": Lead.objects.annotate(n=Count("letters")).filter(n=1).count()}))
"""


class OwnPostgres:
    """initdb, pg_ctl start / restart / stop, as the postgres user."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="emailtrack-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/emailtrack_faults"
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        self._as_postgres(
            PG_BIN / "psql",
            "-h",
            "127.0.0.1",
            "-p",
            self.port,
            "-U",
            "postgres",
            "-c",
            "CREATE DATABASE emailtrack_faults",
        )

    def _as_postgres(self, *command):
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *map(str, command)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    def _pg_ctl(self, *args):
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        return self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.dir / "log", "-o", options, "-w", *args)

    def start(self):
        self._pg_ctl("start")

    def stop(self):
        self._pg_ctl("stop", "-m", "fast")

    def remove(self):
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop",
                        "-m", "immediate"], capture_output=True)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres():
    server = OwnPostgres()
    yield server
    server.remove()


def service_env(server: OwnPostgres, var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=server.url,
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
        VAR_DIR=str(var_dir),
        SECRET_KEY="faults-secret-key-faults-secret-key-faults-secret",
        ALLOWED_HOSTS="*",
        IMAP_ALLOWED_PRIVATE_HOSTS="127.0.0.1",  # the test's Dovecot
    )
    env.pop("DEBUG", None)
    return env


def manage(env, *args, check=True):
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def shell(env, code) -> dict:
    return json.loads(manage(env, "shell", "-v", "0", "-c", code).stdout.strip().splitlines()[-1])


def stored_letters(server: OwnPostgres) -> int:
    with psycopg.connect(server.url) as connection:
        return connection.execute("SELECT count(*) FROM mailbox_sync_letter").fetchone()[0]


def post_collect(base: str, site_key: str, n: int) -> tuple[int, str | None]:
    body = {"v": 1, "site": site_key, "vid": None, "consent": True, "hb": False, "ref": ""}
    body["url"] = f"https://shop.test/?utm_source=burst&n={n}"
    request = urllib.request.Request(
        base + "/api/v1/collect",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Origin": "https://shop.test", "Content-Type": "text/plain", "User-Agent": BROWSER},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, None
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")
    except urllib.error.URLError:  # refused or dropped: no answer at all
        return 0, None


def test_postgres_restarted_under_collects_and_a_sync_loses_nothing_and_stores_nothing_twice(
    own_postgres, dovecot, tmp_path
):
    env = service_env(own_postgres, tmp_path / "var")
    manage(env, "migrate", "--noinput", "-v", "0")
    user, password = dovecot.account()
    setup = shell(env, SETUP.format(port=dovecot.port, user=user, password=password))

    # A burst of new visitors while the database restarts.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi:application", "-b", f"127.0.0.1:{port}"]
        + ["-w", "2", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while post_collect(base, setup["site"], -1)[0] != 200:
            assert time.monotonic() < deadline, "gunicorn did not answer"
            time.sleep(0.2)
        answers, stop = [], threading.Event()

        def visitors(offset):
            n = offset
            while not stop.is_set():
                answers.append(post_collect(base, setup["site"], n))
                n += 2

        threads = [threading.Thread(target=visitors, args=(offset,)) for offset in (0, 1)]
        for thread in threads:
            thread.start()
        time.sleep(1)
        own_postgres.stop()
        time.sleep(2)
        own_postgres.start()
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join()
        after = [post_collect(base, setup["site"], 10_000 + n)[0] for n in range(4)]
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503}, answers
    assert 503 in statuses, "the burst met the restart"
    assert all(retry for status, retry in answers if status == 503)
    assert after == [200] * 4, "collect recovered without a restart of gunicorn"
    with psycopg.connect(own_postgres.url) as connection:
        visitors = connection.execute("SELECT count(*) FROM tracker_visitor").fetchone()[0]
    # Each visitor answered 200 was written (a 503 wrote nothing it would not roll back).
    assert visitors >= sum(status == 200 for status, _ in answers) + len(after)

    # A sync of a few hundred letters loses its database midway.
    for n in range(LETTERS):
        raw = letter_bytes(to=setup["address"], sender=f"Client {n} <client{n}@client.test>", subject=f"Order {n}")
        dovecot.append(user, raw, when=timezone.now())
    sync = subprocess.Popen(
        [sys.executable, "manage.py", "sync_mailboxes", "--mailbox", str(setup["mailbox"]), "--batch", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while stored_letters(own_postgres) < 40:
        assert sync.poll() is None, sync.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the sync stored nothing"
        time.sleep(0.05)
    own_postgres.stop()
    sync.wait(timeout=120)
    own_postgres.start()
    assert shell(env, COUNT)["letters"] < LETTERS, "the restart fell in the middle of the sync"

    manage(env, "sync_mailboxes", "--mailbox", str(setup["mailbox"]))
    counts = shell(env, COUNT)
    assert counts == {
        "letters": LETTERS,
        "uids": LETTERS,
        "attributed": LETTERS,
        "leads": LETTERS,
        "leads_with_one_letter": LETTERS,
    }, counts
