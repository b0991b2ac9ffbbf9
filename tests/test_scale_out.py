"""Scale out on the existing engines: two gunicorn instances and two Celery
workers (each with its own beat) on one PostgreSQL and one Redis, as two
hosts of a deployment would run them.

- New and returning visitors spread over both instances: every address is
  held by at most one visitor at a time, each visitor keeps one address, and
  nothing answers 5xx.
- Both workers are told to sync the same mailbox again and again while
  letters arrive: every letter is stored once and attributed once."""

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from django.db.models import Count
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.models import Letter, Mailbox
from substitution.models import Lease
from substitution.services import lease_acquire
from tests.conftest import free_port
from tests.factories import letter_bytes, make_setup
from tests.test_api_support import visitor_with_session
from tests.test_celery_redis import Worker, broker, wait_for, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.imap, pytest.mark.django_db(transaction=True)]
__all__ = ["broker"]
ROOT = Path(__file__).resolve().parent.parent
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
VISITORS = 60
LETTERS = 120


def collect(base: str, site_key: str, vid: str | None, n: int, ip: str) -> tuple[int, dict]:
    body = {"v": 1, "site": site_key, "vid": vid, "consent": True, "hb": False, "ref": ""}
    body["url"] = f"https://shop.test/page-{n}?utm_source=ads&utm_campaign=scale"
    request = urllib.request.Request(
        base + "/api/v1/collect",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Origin": "https://shop.test", "Content-Type": "text/plain", "User-Agent": BROWSER}
        | {"X-Forwarded-For": ip},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except urllib.error.URLError:
        return 0, {}


def start_gunicorn(env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "config.wsgi:application", "-b", f"127.0.0.1:{port}"]
        + ["-w", "2", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/v1/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_two_gunicorn_instances_never_hold_one_address_twice(broker, tmp_path):
    setup = make_setup(pool_size=VISITORS + 20)
    # Behind one proxy, as deployed: each visitor from an address of their own.
    env = worker_env(tmp_path / "var") | {"TRUSTED_PROXY_COUNT": "1"}
    servers = [start_gunicorn(env) for _ in range(2)]
    try:
        for _process, base in servers:
            deadline = time.monotonic() + 30
            while not ready(base):
                assert time.monotonic() < deadline, "gunicorn did not answer"
                time.sleep(0.2)
        answers: list[tuple[int, str, str]] = []  # status, vid, address

        def visitor(n: int):
            # Each visitor's page views alternate between the two instances.
            vid = None
            for view in range(4):
                base = servers[(n + view) % 2][1]
                status, body = collect(base, setup.site.site_key, vid, view, f"203.0.113.{n + 1}")
                vid = body.get("vid") or vid
                address = body["subs"][0]["email"] if body.get("subs") else ""
                answers.append((status, vid, address))

        threads = [threading.Thread(target=visitor, args=(n,)) for n in range(VISITORS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for process, _base in servers:
            process.terminate()
            process.wait(timeout=30)
    assert Counter(status for status, _, _ in answers) == {200: VISITORS * 4}
    addresses_of: dict[str, set[str]] = {}
    for _status, vid, address in answers:
        addresses_of.setdefault(vid, set()).add(address)
    assert len(addresses_of) == VISITORS
    assert all(len(held) == 1 for held in addresses_of.values()), "each visitor kept one address"
    held = [next(iter(addresses)) for addresses in addresses_of.values()]
    assert len(set(held)) == VISITORS, "no address given to two visitors"
    live = Lease.objects.filter(released_at__isnull=True)
    assert not live.values("address").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert live.count() == VISITORS


def test_two_workers_with_two_beats_store_and_attribute_each_letter_once(dovecot, broker, tmp_path):
    user, password = dovecot.account()
    setup = make_setup(imap_port=dovecot.port, imap_user=user, imap_password=password)
    person = visitor_with_session(setup, source="newsletter", utm_source="newsletter", utm_campaign="autumn")
    address = lease_acquire(pool=setup.pool, visitor=person, now=timezone.now()).email
    env = worker_env(tmp_path / "var")
    log = tmp_path / "workers.log"
    workers = [Worker(env, log), Worker(env, log)]
    try:
        # Letters arrive while both beats enqueue the due sync every second.
        for n in range(LETTERS):
            raw = letter_bytes(to=address, sender=f"Client {n} <client{n}@client.test>", subject=f"Order {n}")
            dovecot.append(user, raw, when=timezone.now())

        def all_attributed() -> bool:
            # A sync that ran while letters were still arriving set the next
            # poll minutes away; keep the mailbox due, as the listener's EXISTS
            # would, so the letters after it are read by the next beat.
            Mailbox.objects.filter(pk=setup.mailbox.pk, claimed_until__isnull=True).update(next_sync_at=None)
            return Letter.objects.filter(mailbox=setup.mailbox, attributed_at__isnull=False).count() >= LETTERS

        wait_for(
            all_attributed,
            "every letter attributed",
            workers[0],
            timeout=120,
        )
        time.sleep(3)  # more syncs run meanwhile: none may add a second copy
    finally:
        for worker in workers:
            worker.stop()
    letters = Letter.objects.filter(mailbox=setup.mailbox)
    assert letters.count() == LETTERS
    assert letters.values("uid").distinct().count() == LETTERS
    assert Lead.objects.count() == LETTERS
    assert not Lead.objects.annotate(n=Count("letters")).filter(n__gt=1).exists()
    assert "mailbox_sync.tasks.sync_mailbox" in log.read_text(errors="replace")
