"""Sending one outbound message (webhook delivery, notification, conversion)
at most once at a time, with retries on a schedule kept in the database.

A sender claims its row with a conditional update (`claim`), so duplicate
task messages, a beat sweep and a redelivery can race without sending twice.
A transient failure schedules the next attempt with exponential backoff until
the row's retry window (`give_up_at`) closes; a permanent one gives up at once.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from . import conf
from .models import Outbound, OutboundStatus

MAX_RETRY_SECONDS = 4 * 3600


def claim_period() -> timedelta:
    """How long one attempt holds its row (OUTBOX_CLAIM_SECONDS, 3 minutes)."""
    return timedelta(seconds=conf.outbox_claim_seconds())


class SendError(Exception):
    """An attempt that did not succeed. `permanent`: retrying cannot help
    (a refused target, an unknown chat); `retry_after`: the other side asked
    us to wait this many seconds; `status_code`: the HTTP answer, if any."""

    def __init__(self, message: str, *, permanent=False, retry_after=None, status_code=None, excerpt=""):
        super().__init__(message)
        self.message = message[:500]
        self.permanent = permanent
        self.retry_after = retry_after
        self.status_code = status_code
        self.excerpt = excerpt


@dataclass
class Outcome:
    status: str
    retry_at: datetime | None = None
    error: str = ""


def backoff(attempts: int, *, rng=random.random) -> timedelta:
    """OUTBOX_FIRST_RETRY_SECONDS (30 s) after the first failure, doubling
    each time up to 4 hours, plus up to 10% jitter so that receivers coming
    back up are not hit all at once."""
    seconds = min(conf.outbox_first_retry_seconds() * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
    return timedelta(seconds=seconds * (1 + 0.1 * rng()))


def claim(model: type[Outbound], pk: int, now: datetime) -> bool:
    """Take the row for one attempt if it is pending, due and not being sent."""
    return (
        model.objects.filter(pk=pk, status=OutboundStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + claim_period())
        == 1
    )


def succeeded(row: Outbound, now: datetime, **fields) -> Outcome:
    _finish(row, now, status=OutboundStatus.SENT, sent_at=now, last_error="", next_attempt_at=None, **fields)
    return Outcome(OutboundStatus.SENT)


def failed(row: Outbound, now: datetime, error: SendError, **fields) -> Outcome:
    """Schedule the next attempt, or give up when retrying cannot help or the window has closed."""
    attempts = row.attempts + 1
    delay = backoff(attempts)
    if error.retry_after:
        delay = max(delay, timedelta(seconds=min(float(error.retry_after), MAX_RETRY_SECONDS)))
    retry_at = now + delay
    if error.permanent or retry_at > row.give_up_at:
        _finish(row, now, status=OutboundStatus.FAILED, last_error=error.message, next_attempt_at=None, **fields)
        return Outcome(OutboundStatus.FAILED, error=error.message)
    _finish(row, now, status=OutboundStatus.PENDING, last_error=error.message, next_attempt_at=retry_at, **fields)
    return Outcome(OutboundStatus.PENDING, retry_at=retry_at, error=error.message)


def skipped(row: Outbound, now: datetime, reason: str) -> Outcome:
    """Nothing to send after all (switched off since, no client id): recorded, not retried."""
    row.status, row.last_error, row.next_attempt_at, row.claimed_until = (
        OutboundStatus.SKIPPED,
        reason[:500],
        None,
        None,
    )
    row.save(update_fields=["status", "last_error", "next_attempt_at", "claimed_until"])
    return Outcome(OutboundStatus.SKIPPED, error=reason)


def _finish(row: Outbound, now: datetime, **fields) -> None:
    fields.update(attempts=row.attempts + 1, last_attempt_at=now, claimed_until=None)
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=list(fields))


def due_ids(model: type[Outbound], now: datetime, limit: int = 500) -> list[int]:
    """Pending rows whose attempt is due and that no sender holds."""
    return list(
        model.objects.filter(status=OutboundStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
