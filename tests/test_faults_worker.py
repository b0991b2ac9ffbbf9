"""Faults: a Celery worker SIGKILLed between storing letters and attributing
them. Production's worker (Redis broker, tasks acknowledged late) runs the
due mailbox's sync; the test holds its attribution of the first stored batch
(the worker's own code, with that one call made to wait) and kills the worker
then, with letters stored and none attributed. A worker started again takes
the task back once the broker's visibility timeout passes, takes over the dead
worker's claim on the mailbox, and attributes every letter exactly once."""

import os
import time
from collections import Counter

import pytest
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.models import Letter
from substitution.services import lease_acquire
from tests.factories import letter_bytes, make_setup
from tests.test_api_support import visitor_with_session
from tests.test_celery_redis import VISIBILITY_SECONDS, Worker, broker, unacked_tasks, wait_for, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.imap, pytest.mark.django_db(transaction=True)]
__all__ = ["broker"]  # the broker fixture, emptied before and after

LETTERS = 40

# The worker of production, with the attribution of stored letters held:
# the first call says so in a file and never returns.
HELD_WORKER = """
import os
import sys
import time

import django

django.setup()
from mailbox_sync import store


def held(letter_ids):
    with open(os.environ["HELD_MARKER"], "w") as marker:
        marker.write(",".join(map(str, letter_ids)))
    time.sleep(600)


store.attribute_stored = held
from celery.bin.celery import main

sys.exit(main())
"""


class HeldWorker(Worker):
    script = HELD_WORKER


def test_a_worker_killed_between_storing_and_attributing_loses_no_letter_and_doubles_none(dovecot, broker, tmp_path):
    user, password = dovecot.account()
    setup = make_setup(imap_port=dovecot.port, imap_user=user, imap_password=password)
    person = visitor_with_session(setup, source="newsletter", utm_source="newsletter", utm_campaign="autumn")
    address = lease_acquire(pool=setup.pool, visitor=person, now=timezone.now()).email
    for n in range(LETTERS):
        raw = letter_bytes(to=address, sender=f"Client {n} <client{n}@client.test>", subject=f"Order {n}")
        dovecot.append(user, raw, when=timezone.now())

    env = worker_env(tmp_path / "var")
    marker = tmp_path / "held"
    log = tmp_path / "worker.log"
    first = HeldWorker({**env, "HELD_MARKER": str(marker)}, log)
    try:
        wait_for(marker.exists, "letters stored and their attribution started", first)
        time.sleep(0.5)  # the storing side goes on meanwhile
        first.kill()
    finally:
        first.stop()
    stored = Letter.objects.filter(mailbox=setup.mailbox)
    assert stored.count() >= 1
    assert not Lead.objects.exists()
    assert not stored.filter(attributed_at__isnull=False).exists()
    (held,) = unacked_tasks(broker)  # acknowledged late: still the broker's
    assert held[:2] == ("mailbox_sync.tasks.sync_mailbox", f"({setup.mailbox.pk},)")

    time.sleep(max(0.0, held[3] + VISIBILITY_SECONDS + 0.5 - time.time()))
    second = Worker(env, log)
    try:
        wait_for(
            lambda: Letter.objects.filter(mailbox=setup.mailbox, attributed_at__isnull=False).count() == LETTERS,
            "every letter attributed after the restart",
            second,
            timeout=90,
        )
    finally:
        second.stop()
    letters = list(Letter.objects.filter(mailbox=setup.mailbox).values_list("uid", "lead_id"))
    assert len(letters) == LETTERS
    assert len({uid for uid, _ in letters}) == LETTERS, "no letter stored twice"
    leads = Counter(lead_id for _, lead_id in letters)
    assert None not in leads
    assert len(leads) == LETTERS == Lead.objects.count(), "each letter one lead, none attributed twice"
    assert set(Lead.objects.values_list("campaign", flat=True)) == {"autumn"}
    assert os.path.exists(marker)
