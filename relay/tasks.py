"""Celery tasks: thin wrappers around the queue. Each attempt claims its row
in the database, so a duplicate message or a beat sweep never sends twice."""

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from . import queue

# Longer waits are left to the beat sweep (a broker may redeliver a message
# whose ETA lies beyond its visibility timeout).
MAX_COUNTDOWN_SECONDS = 30 * 60


@shared_task
def send_queued(pk: int) -> None:
    outcome = queue.attempt(pk)
    if outcome.bounce_id:
        bounce_id = outcome.bounce_id
        transaction.on_commit(lambda: send_queued.delay(bounce_id))
    if outcome.retry_at is not None:
        countdown = (outcome.retry_at - timezone.now()).total_seconds()
        if countdown <= MAX_COUNTDOWN_SECONDS:
            send_queued.apply_async((pk,), countdown=max(countdown, 0))


@shared_task
def send_due() -> int:
    """Beat (every minute): every queued letter whose next attempt is due,
    including any whose first attempt was cut short."""
    ids = queue.due_ids()
    for pk in ids:
        send_queued.delay(pk)
    return len(ids)


@shared_task
def purge_queue() -> int:
    return queue.purge()
