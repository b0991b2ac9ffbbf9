"""Celery as production runs it: a real worker with beat, Redis as broker,
PostgreSQL as database. Beat enqueues the due mailbox's sync, the worker
syncs it from Dovecot, the new lead's webhook is delivered by the worker
with retries, and a worker killed (SIGKILL) in the middle of a delivery
loses nothing: the task, acknowledged late, stays with the broker and goes
back to the queue after the visibility timeout."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from attribution.models import Lead, MatchKind
from integrations import tasks
from integrations.models import OutboundStatus, WebhookDelivery
from mailbox_sync.models import Letter
from substitution.services import lease_acquire
from tests.factories import letter_bytes, make_setup
from tests.test_api_support import Receiver, Reply, visitor_with_session
from tests.test_webhooks import make_webhook

pytestmark = [pytest.mark.slow, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
BROKER_DB = 12  # a Redis database of this test's own, emptied before and after
VISIBILITY_SECONDS = 6
# The worker runs the project's Celery app unchanged.
WORKER = """
import sys

from celery.bin.celery import main

sys.exit(main())
"""


@pytest.fixture
def broker():
    client = redis.Redis(host="127.0.0.1", port=6379, db=BROKER_DB)
    client.flushdb()
    yield client
    client.flushdb()


class Worker:
    """`celery -A config worker -B` (prefork, one process) in a session of
    its own, so that a kill takes its pool and beat with it."""

    script = WORKER

    def __init__(self, env: dict, log: Path):
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", self.script, "-A", "config", "worker", "-B", "--concurrency=1"]
                + ["--loglevel=info", "--without-mingle", "--without-gossip"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def worker_env(var_dir: Path) -> dict:
    database = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
        DATABASE_URL=(
            f"postgres://{database['USER']}:{database['PASSWORD']}@{database['HOST']}:{database['PORT']}"
            f"/{database['NAME']}"
        ),
        REDIS_URL=f"redis://127.0.0.1:6379/{BROKER_DB}",
        VAR_DIR=str(var_dir),
        SYNC_BEAT_SECONDS="1",
        CELERY_VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_SECONDS),
        WEBHOOK_ALLOW_PRIVATE_TARGETS="1",  # the receiver is on loopback
        WEBHOOK_TIMEOUT_SECONDS="4",
        # The outbox's times made test-sized (3 minutes and 30 seconds in
        # production): a claim still outlasts any one attempt (the webhook
        # timeout is 4 s), and the first retry comes after a second.
        OUTBOX_CLAIM_SECONDS="5",
        OUTBOX_FIRST_RETRY_SECONDS="1",
    )
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


def wait_for(check, what: str, worker: Worker, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert worker.process.poll() is None, f"the worker exited:\n{worker.output()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{worker.output()}"
        time.sleep(0.2)
    return found


def unacked_tasks(broker) -> list[tuple[str, str, str, float]]:
    """The messages a worker took and has not acknowledged: (task, args, task id, taken at)."""
    taken = dict(broker.zrange("unacked_index", 0, -1, withscores=True))
    found = []
    for tag, payload in broker.hgetall("unacked").items():
        headers = json.loads(payload)[0]["headers"]
        found.append((headers["task"], headers["argsrepr"], headers["id"], taken[tag]))
    return found


def test_the_production_settings_acknowledge_late_and_outlast_every_countdown():
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert not settings.CELERY_TASK_ALWAYS_EAGER
    # The test suite runs on Redis, as production does.
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > tasks.MAX_COUNTDOWN_SECONDS


def test_beat_and_a_worker_on_redis_sync_the_due_mailbox_and_deliver_the_webhook_through_a_kill(
    dovecot, broker, tmp_path
):
    user, password = dovecot.account()
    setup = make_setup(imap_port=dovecot.port, imap_user=user, imap_password=password)
    person = visitor_with_session(setup, source="newsletter", utm_source="newsletter", utm_campaign="autumn")
    address = lease_acquire(pool=setup.pool, visitor=person, now=timezone.now()).email
    dovecot.append(user, letter_bytes(to=address, subject="Autumn offer?"), when=timezone.now())

    receiver = Receiver()
    taken, release = threading.Event(), threading.Event()

    def answers(request):
        # The first attempt is held until the worker has been killed; the
        # second is refused with a 503; the third succeeds.
        if len(receiver.requests) == 1:
            taken.set()
            release.wait(60)
            return Reply(500, b"too late")
        return Reply(503, b"busy") if len(receiver.requests) == 2 else None

    receiver.check = answers
    hook = make_webhook(setup.project, receiver.url + "/hook")
    env = worker_env(tmp_path / "var")
    log = tmp_path / "worker.log"
    first = Worker(env, log)
    try:
        # Beat finds the mailbox due, the worker syncs it; the lead's webhook is on its way.
        wait_for(taken.is_set, "the first delivery attempt", first)
        lead = Lead.objects.get()
        assert (lead.campaign, lead.source, lead.match_kind) == ("autumn", "newsletter", MatchKind.LIVE_LEASE)
        delivery = WebhookDelivery.objects.get(webhook=hook)

        first.kill()
        release.set()
        # Acknowledged late: the killed worker's task is still the broker's.
        (held,) = unacked_tasks(broker)
        assert held[:2] == ("integrations.tasks.send_webhook_delivery", f"({delivery.pk},)")
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == OutboundStatus.PENDING

        # A worker started once the task has been out for the visibility
        # timeout (and the dead attempt's claim has lapsed) takes it again.
        claimed_until = WebhookDelivery.objects.get(pk=delivery.pk).claimed_until.timestamp()
        time.sleep(max(held[3] + VISIBILITY_SECONDS, claimed_until) + 0.5 - time.time())
        second = Worker(env, log)
        try:
            # (Well before beat's once-a-minute sweep of due deliveries could send it.)
            wait_for(
                lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == OutboundStatus.SENT,
                "the delivery after the kill",
                second,
                timeout=30,
            )
        finally:
            second.stop()
    finally:
        release.set()
        first.stop()
        receiver.close()

    delivery = WebhookDelivery.objects.get(pk=delivery.pk)
    assert delivery.last_status_code == 200
    # The cut attempt, the 503 and the retry: the same delivery each time.
    assert len(receiver.requests) == 3
    assert {request.headers["x-emailtrack-delivery"] for request in receiver.requests} == {str(delivery.event_id)}
    assert len({request.body for request in receiver.requests}) == 1
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [503, 200]
    # The sync ran once: one letter, one lead.
    assert (Letter.objects.count(), Lead.objects.count()) == (1, 1)
    assert unacked_tasks(broker) == []
    output = log.read_text(errors="replace")
    assert "mailbox_sync.tasks.sync_mailbox" in output
    # The very message the killed worker held was received again.
    assert output.count(f"integrations.tasks.send_webhook_delivery[{held[2]}] received") == 2
