"""The relay's queue: a letter is stored (committed) before the client hears
250, then handed to the project's upstream; what the upstream does not take
is retried with backoff and jitter until the queue window closes, then
bounced to the sender.

Every attempt is made by whoever claims the row with a conditional update
(`integrations.outbox.claim`), so the relay process, any number of workers
and a beat sweep can race without a recipient getting the letter twice. A
row the relay stores is claimed from the start for its first attempt; if the
process dies before that attempt, the claim lapses and the sweep takes it.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesParser
from email.policy import compat32

from django.db import transaction
from django.utils import timezone

from engagement import relaying
from integrations import outbox
from integrations.models import OutboundStatus

from . import bounce, conf, upstream
from .models import Credential, QueuedLetter, Upstream

log = logging.getLogger(__name__)

SAVED_AFTER_ATTEMPT = [
    "delivered",
    "refused",
    "recipients",
    "attempts",
    "last_attempt_at",
    "claimed_until",
    "last_error",
    "status",
    "next_attempt_at",
    "sent_at",
]


@dataclass
class Copy:
    recipients: list[str]
    raw: bytes
    recipient_ids: list[int] = field(default_factory=list)


@dataclass
class Attempt:
    """What one attempt on one row did."""

    claimed: bool
    status: str = ""
    retry_at: datetime | None = None
    error: str = ""
    bounce_id: int | None = None
    refused: list = field(default_factory=list)  # permanent failures, when the bounce was left to the caller


class NotAccepted(Exception):
    """The relay cannot take the letter now: the reply says why (4xx or 5xx)."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


def message_id_of(raw: bytes) -> str:
    try:
        headers = BytesParser(policy=compat32).parsebytes(bounce.original_headers(raw), headersonly=True)
        return " ".join(str(headers.get("Message-ID", "")).split())[:255]
    except Exception:  # noqa: BLE001 - a letter with broken headers is still relayed
        return ""


def active_upstream(project_id: int) -> Upstream | None:
    return Upstream.objects.filter(project_id=project_id, active=True).first()


def _copies(credential: Credential, mail_from: str, recipients: list[str], raw: bytes, client_ip) -> list[Copy]:
    """The copies engagement makes (each tracked recipient's own, and the
    untouched one for the rest); the letter as it came when it cannot."""
    try:
        with transaction.atomic():
            made = relaying.track_relayed_letter(
                project_id=credential.project_id,
                raw=raw,
                mail_from=mail_from,
                recipients=recipients,
                client_ip=client_ip,
            )
    except Exception:  # noqa: BLE001 - tracking must never cost a letter
        log.exception("tracking a relayed letter failed; it goes out untracked")
        return [Copy(recipients, raw)]
    copies = [Copy(list(c.recipients), c.raw, list(c.recipient_ids)) for c in made if c.recipients]
    covered = sorted(r for c in copies for r in c.recipients)
    if covered != sorted(recipients):
        log.error("tracked copies do not cover the recipients exactly; the letter goes out untracked")
        return [Copy(recipients, raw)]
    return copies


def _tracked(copy: Copy) -> list:
    """[address, recipient id] pairs, or ["*", id] when the ids do not line up with the addresses."""
    if len(copy.recipient_ids) == len(copy.recipients):
        return [[r, i] for r, i in zip(copy.recipients, copy.recipient_ids, strict=True)]
    return [["*", i] for i in copy.recipient_ids]


def letter_store(
    *,
    credential: Credential,
    mail_from: str,
    recipients: list[str],
    raw: bytes,
    client_ip: str | None,
    now: datetime | None = None,
) -> list[QueuedLetter]:
    """Store the letter's copies in one transaction, claimed for their first
    attempt. Nothing is stored when anything fails."""
    now = now or timezone.now()
    if active_upstream(credential.project_id) is None:
        raise NotAccepted("451 4.3.5 No upstream SMTP server is configured for this project")
    message_id = message_id_of(raw)
    with transaction.atomic():
        rows = [
            QueuedLetter.objects.create(
                project_id=credential.project_id,
                credential=credential,
                kind=QueuedLetter.Kind.LETTER,
                mail_from=mail_from,
                recipients=copy.recipients,
                recipient_ids=_tracked(copy),
                raw=copy.raw,
                size=len(copy.raw),
                message_id=message_id,
                client_ip=client_ip,
                next_attempt_at=now,
                give_up_at=now + timedelta(hours=conf.queue_hours()),
                claimed_until=now + outbox.claim_period(),
            )
            for copy in _copies(credential, mail_from, recipients, raw, client_ip)
        ]
    return rows


def letter_receive(
    *,
    credential: Credential,
    mail_from: str,
    recipients: list[str],
    raw: bytes,
    client_ip: str | None,
    now: datetime | None = None,
) -> str:
    """The relay's whole handling of a letter after DATA, and the reply its
    client gets: stored first, then one attempt on each copy. A letter the
    upstream refused for every recipient is answered 554 (the sender's client
    shows it; no bounce); recipients refused beside delivered or waiting ones
    get a bounce."""
    now = now or timezone.now()
    try:
        rows = letter_store(
            credential=credential, mail_from=mail_from, recipients=recipients, raw=raw, client_ip=client_ip, now=now
        )
    except NotAccepted as exc:
        return exc.reply
    outcomes = []
    for row in rows:
        try:
            outcomes.append((row, attempt_claimed(row, now, bounce_refused=False)))
        except Exception:  # noqa: BLE001 - stored and claimed: the sweep tries it when the claim lapses
            log.exception("the first attempt on queued letter %s failed", row.pk)
            outcomes.append((row, Attempt(claimed=True, status=OutboundStatus.PENDING, error="first attempt failed")))
    waiting = [o for _row, o in outcomes if o.status == OutboundStatus.PENDING]
    refused = [(row, o.refused) for row, o in outcomes if o.refused]
    if refused and not waiting and not any(row.delivered for row, _o in outcomes):
        _rcpt, code, reply = refused[0][1][0]
        return f"554 5.0.0 The upstream server refused the letter: {code} {reply}"[:500]
    bounce_refused(refused, now)
    if waiting:
        return f"250 2.0.0 Queued, retried for {conf.queue_hours():g} hours: {waiting[0].error}"[:500]
    return "250 2.0.0 Delivered to the upstream server"


def attempt(pk: int, now: datetime | None = None) -> Attempt:
    """Claim the row if it is due and nobody holds it, then try the upstream once."""
    now = now or timezone.now()
    if not outbox.claim(QueuedLetter, pk, now):
        return Attempt(claimed=False)
    return attempt_claimed(QueuedLetter.objects.get(pk=pk), now)


def attempt_claimed(row: QueuedLetter, now: datetime, *, bounce_refused: bool = True) -> Attempt:
    """Try a row this caller holds. With `bounce_refused` off, recipients the
    upstream refused for good are returned instead of bounced (the relay tells
    its client directly when nothing else happened to the letter)."""
    target = active_upstream(row.project_id)
    if target is None:
        result = upstream.Result(temporary=[(r, 0, "no active upstream SMTP server") for r in row.recipients])
    else:
        result = upstream.send(target, mail_from=row.mail_from, recipients=row.recipients, raw=bytes(row.raw))
    refused = [list(failure) for failure in result.permanent]
    waiting = [rcpt for rcpt, _code, _reply in result.temporary]
    expired = bool(waiting) and now >= row.give_up_at
    outcome = Attempt(claimed=True, error=result.error)
    with transaction.atomic():
        row.delivered = row.delivered + result.accepted
        row.refused = row.refused + refused
        row.recipients = waiting
        row.attempts += 1
        row.last_attempt_at = now
        row.claimed_until = None
        row.last_error = result.error[:500]
        if waiting and not expired:
            row.status = OutboundStatus.PENDING
            row.next_attempt_at = min(now + outbox.backoff(row.attempts), row.give_up_at)
            outcome.retry_at = row.next_attempt_at
        else:
            row.status = OutboundStatus.SENT if row.delivered else OutboundStatus.FAILED
            row.next_attempt_at = None
            row.sent_at = now if row.delivered else None
        row.save(update_fields=SAVED_AFTER_ATTEMPT)  # never the letter's bytes again
        outcome.status = row.status
        _delivered(row, result.accepted, now)
        failures = refused + ([[rcpt, code, reply] for rcpt, code, reply in result.temporary] if expired else [])
        if failures and (bounce_refused or expired):
            outcome.bounce_id = _bounce(row, failures, now, expired=expired)
        elif failures:
            outcome.refused = failures
    return outcome


def _delivered(row: QueuedLetter, accepted: list[str], now: datetime) -> None:
    """Tell engagement which tracked recipients the upstream accepted (the "delivered" figure)."""
    if not accepted or not row.recipient_ids:
        return
    ids = [i for rcpt, i in row.recipient_ids if rcpt in accepted or rcpt == "*"]
    if not ids:
        return
    try:
        with transaction.atomic():
            relaying.recipients_delivered(ids, now)
    except Exception:  # noqa: BLE001 - the letter's state matters more than the figure
        log.exception("recording delivered recipients failed")


def _bounce(row: QueuedLetter, failures: list, now: datetime, *, expired: bool) -> int | None:
    """Queue a DSN to the sender of a letter (never about a bounce: its sender is empty)."""
    if row.kind != QueuedLetter.Kind.LETTER or not row.mail_from:
        return None
    raw = bounce.build(
        sender=row.mail_from,
        failures=[tuple(f) for f in failures],
        original=bytes(row.raw),
        arrived=row.created_at,
        now=now,
        expired=expired,
    )
    made = QueuedLetter.objects.create(
        project_id=row.project_id,
        credential_id=row.credential_id,
        kind=QueuedLetter.Kind.BOUNCE,
        mail_from="",
        recipients=[row.mail_from],
        raw=raw,
        size=len(raw),
        message_id=message_id_of(raw),
        bounce_of=row,
        next_attempt_at=now,
        give_up_at=now + timedelta(hours=conf.queue_hours()),
    )
    return made.pk


def bounce_refused(rows_and_failures: list[tuple[QueuedLetter, list]], now: datetime) -> list[int]:
    """Bounces for recipients refused during the relay's own attempt, when the letter was accepted."""
    return [pk for row, failures in rows_and_failures if (pk := _bounce(row, failures, now, expired=False))]


def retry_now(queryset, now: datetime | None = None) -> list[int]:
    """Make waiting letters due at once; returns their ids (for the caller to enqueue)."""
    now = now or timezone.now()
    ids = list(queryset.filter(status=OutboundStatus.PENDING).values_list("pk", flat=True))
    QueuedLetter.objects.filter(pk__in=ids).update(next_attempt_at=now)
    return ids


def due_ids(now: datetime | None = None) -> list[int]:
    return outbox.due_ids(QueuedLetter, now or timezone.now())


def purge(now: datetime | None = None) -> int:
    """Erase sent and failed letters older than the keep period (their bytes are personal data)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=conf.keep_days())
    old = QueuedLetter.objects.filter(created_at__lt=cutoff).exclude(status=OutboundStatus.PENDING)
    deleted, _ = old.delete()
    return deleted
