"""Storing letters exactly once, from IMAP or from files, and the sync loop.

Every letter goes through `store_letter`: one plain function that takes raw
RFC 822 bytes. The unique (mailbox, folder, UIDVALIDITY, UID) and
(mailbox, Message-ID or raw hash) constraints make storing idempotent; a
folder's high-water UID advances only after its letters are committed, so a
crash at any point re-reads, never skips.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from lib import crypto

from . import imap, parsing
from .models import FolderState, Letter, Mailbox

log = logging.getLogger(__name__)


def _clean(value: str) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return value.replace("\x00", "") if value else value


def _clean_json(value):
    # Nor can jsonb hold "\u0000".
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [_clean_json(item) for item in value]
    if isinstance(value, dict):
        return {_clean(key): _clean_json(item) for key, item in value.items()}
    return value


def mailbox_set_password(mailbox: Mailbox, password: str) -> None:
    mailbox.password_encrypted = crypto.encrypt(password)


def mailbox_password(mailbox: Mailbox) -> str:
    return crypto.decrypt(mailbox.password_encrypted) if mailbox.password_encrypted else ""


def store_letter(
    *,
    mailbox: Mailbox,
    raw: bytes,
    received_at: datetime | None,
    origin: str = Letter.Origin.IMAP,
    folder: str = "",
    uidvalidity: int | None = None,
    uid: int | None = None,
) -> Letter | None:
    """Store one letter; None when it was already stored. `received_at` is the
    arrival time (IMAP INTERNALDATE); for files it is taken from the top
    Received header, else the Date header, else now."""
    parsed = parsing.parse(raw, mailbox.text_limit)
    if received_at is None:
        received_at = parsed.received_header_at or parsed.date_header or timezone.now()
    key = _clean(parsing.dedupe_key(parsed.message_id, raw))
    if Letter.objects.filter(mailbox=mailbox, dedupe_key=key).exists():
        return None
    if (
        uid is not None
        and Letter.objects.filter(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid=uid).exists()
    ):
        return None
    try:
        with transaction.atomic():
            return Letter.objects.create(
                mailbox=mailbox,
                origin=origin,
                folder=folder,
                uidvalidity=uidvalidity,
                uid=uid,
                dedupe_key=key,
                message_id=_clean(parsed.message_id),
                received_at=received_at,
                date_header=parsed.date_header,
                sender_email=_clean(parsed.sender_email),
                sender_name=_clean(parsed.sender_name),
                subject=_clean(parsed.subject),
                recipients=_clean_json(parsed.recipients),
                in_reply_to=_clean(parsed.in_reply_to),
                references=_clean_json(parsed.references),
                text=_clean(parsed.text),
                attachments=_clean_json(parsed.attachments),
                size=len(raw),
                headers=_clean_json(parsed.headers),
                raw=raw,
                malformed=parsed.malformed,
                parse_error=_clean(parsed.parse_error),
                not_lead_reason="spam folder" if imap.is_spam_folder(folder) else "",
            )
    except IntegrityError:
        return None  # a concurrent sync stored it first


def attribute_stored(letters: list[Letter]) -> None:
    """Turn stored letters into leads. A failure is recorded on the letter,
    which stays stored and is retried by the next sync."""
    from attribution.services import attribute_letter

    for letter in letters:
        try:
            attribute_letter(letter.pk)
        except Exception as error:  # noqa: BLE001 - one bad letter must not stop the rest
            log.exception("Attribution failed for letter %s", letter.pk)
            Letter.objects.filter(pk=letter.pk).update(attribution_error=f"{type(error).__name__}: {error}"[:1000])


def ingest_raw(*, mailbox: Mailbox, raw: bytes, origin: str = Letter.Origin.FILE, received_at=None) -> Letter | None:
    """A letter from a file (or the demo page) through the same pipeline."""
    letter = store_letter(mailbox=mailbox, raw=raw, received_at=received_at, origin=origin)
    if letter is not None:
        attribute_stored([letter])
        letter.refresh_from_db()
    return letter


# --- The sync -----------------------------------------------------------------


def claim(mailbox_id: int, now: datetime) -> bool:
    """Take the mailbox for one sync; any number of workers may race for it."""
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    until = now + timedelta(seconds=settings.SYNC_CLAIM_SECONDS)
    return Mailbox.objects.filter(Q(pk=mailbox_id) & free).update(claimed_until=until) == 1


def due_mailbox_ids(now: datetime) -> list[int]:
    return list(
        Mailbox.objects.filter(active=True)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .values_list("id", flat=True)
    )


@dataclass
class SyncResult:
    stored: int = 0
    seen: int = 0
    error: str = ""


def sync_mailbox(mailbox_id: int, *, progress=None) -> SyncResult:
    """Read the mailbox's new letters, read-only, and store each once.

    First sync of a folder: letters of the last 24 hours by INTERNALDATE; then
    every UID above the high-water mark. A UIDVALIDITY change re-reads the
    window and relies on the Message-ID / hash de-duplication. A failure marks
    the mailbox failing with the reason and backs off; it never raises."""
    now = timezone.now()
    if not claim(mailbox_id, now):
        return SyncResult(error="Another sync holds this mailbox")
    mailbox = Mailbox.objects.get(pk=mailbox_id)
    result = SyncResult()
    try:
        with imap.connect(mailbox, mailbox_password(mailbox)) as client:
            for folder in mailbox.folder_names:
                _sync_folder(client, mailbox, folder, result, progress)
    except imap.SyncError as error:
        result.error = str(error)
    except Exception as error:  # noqa: BLE001 - recorded on the mailbox, the loop goes on
        log.exception("Sync of mailbox %s failed", mailbox_id)
        result.error = f"{type(error).__name__}: {error}"
    _finish(mailbox, result)
    _retry_unattributed(mailbox)
    return result


def _sync_folder(client, mailbox: Mailbox, folder: str, result: SyncResult, progress) -> None:
    uidvalidity, uidnext = imap.select_readonly(client, folder)
    state = FolderState.objects.filter(mailbox=mailbox, name=folder).first()
    if state is None or state.uidvalidity != uidvalidity:
        since = timezone.now() - settings.FIRST_SYNC_WINDOW
        uids = imap.uids_since(client, since)
        if state is None:
            state = FolderState.objects.create(mailbox=mailbox, name=folder, uidvalidity=uidvalidity, last_uid=0)
        else:
            log.warning("UIDVALIDITY of %s/%s changed; re-reading the window", mailbox.pk, folder)
            FolderState.objects.filter(pk=state.pk).update(uidvalidity=uidvalidity, last_uid=0)
            state.uidvalidity, state.last_uid = uidvalidity, 0
        window_start = since
    else:
        uids = imap.uids_above(client, state.last_uid)
        window_start = None
    if progress is not None:
        progress.start(folder, len(uids))
    for batch in imap.batches(uids, settings.IMAP_FETCH_BATCH):
        stored = []
        for message in imap.fetch(client, batch):
            result.seen += 1
            if window_start is not None and message.internal_date < window_start:
                continue
            letter = store_letter(
                mailbox=mailbox,
                raw=message.raw,
                received_at=message.internal_date,
                folder=folder,
                uidvalidity=uidvalidity,
                uid=message.uid,
            )
            if letter is not None:
                stored.append(letter)
        # Letters are committed one by one above; only now may the mark move.
        FolderState.objects.filter(pk=state.pk).update(last_uid=max(batch), last_synced_at=timezone.now())
        result.stored += len(stored)
        attribute_stored(stored)
        if progress is not None:
            progress.advance(len(batch))
    if window_start is not None and uidnext > 1:
        # Letters below UIDNEXT that the window left out are older than it:
        # later syncs must not read them as new.
        FolderState.objects.filter(pk=state.pk, last_uid__lt=uidnext - 1).update(last_uid=uidnext - 1)


def _finish(mailbox: Mailbox, result: SyncResult) -> None:
    now = timezone.now()
    fields = {"last_sync_at": now, "claimed_until": None}
    if result.error:
        failures = mailbox.failure_count + 1
        backoff = min(timedelta(minutes=mailbox.sync_interval_minutes) * 2 ** (failures - 1), settings.SYNC_MAX_BACKOFF)
        fields.update(
            state=Mailbox.State.FAILING,
            last_error=result.error[:2000],
            last_error_at=now,
            failure_count=failures,
            next_sync_at=now + backoff,
        )
    else:
        fields.update(
            state=Mailbox.State.OK,
            last_error="",
            failure_count=0,
            last_success_at=now,
            next_sync_at=now + timedelta(minutes=mailbox.sync_interval_minutes),
        )
    Mailbox.objects.filter(pk=mailbox.pk).update(**fields)


def _retry_unattributed(mailbox: Mailbox) -> None:
    # Failed letters, and letters stored by a run that died before it could
    # attribute them (a re-read finds them stored and skips them).
    pending = list(Letter.objects.filter(mailbox=mailbox, attributed_at__isnull=True).order_by("id")[:100])
    attribute_stored(pending)
