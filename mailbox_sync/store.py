"""Storing letters exactly once, from IMAP or from files, and handing them
to attribution.

Every letter goes through `store_letters`, which takes raw RFC 822 bytes.
The unique (mailbox, folder, UIDVALIDITY, UID) and (mailbox, Message-ID or
raw hash) constraints make storing idempotent; a batch costs the same few
queries whatever its size (look up what is stored, insert the rest).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import bulk, parsing
from .imap import is_spam_folder
from .models import Letter, LetterSource, Mailbox

log = logging.getLogger(__name__)

# Letters attributed per query of pending ones.
PENDING_CHUNK = 500
# Letters attributed together (their reads and writes are shared).
ATTRIBUTION_BATCH = 500
# Letters whose attribution failed are retried, at most this many per sync.
FAILED_RETRY_LIMIT = 100


@dataclass
class Incoming:
    """One letter to store: its bytes and what the server said about it."""

    raw: bytes
    received_at: datetime | None = None
    uid: int | None = None
    size: int | None = None  # the letter's real size when only its start was fetched
    truncated: bool = False
    parsed: parsing.ParsedLetter | None = None  # parsed already (by the prefetch thread)


@dataclass
class Stored:
    letters: list[Letter] = field(default_factory=list)
    malformed: int = 0
    truncated: int = 0


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


def store_letters(
    *,
    mailbox: Mailbox,
    incoming: list[Incoming],
    origin: str = Letter.Origin.IMAP,
    folder: str = "",
    uidvalidity: int | None = None,
    spam_folder: bool = False,
) -> Stored:
    """Store the letters not stored yet; each letter is parsed once. A
    letter already stored (same UID, same Message-ID, or the same raw bytes
    when it has no Message-ID) is skipped, also within the batch."""
    rows = []
    for item in incoming:
        parsed = item.parsed or parsing.parse(item.raw, mailbox.text_limit)
        rows.append((_clean(parsing.dedupe_key(parsed.message_id, item.raw)), item, parsed))
    keys = [key for key, _item, _parsed in rows]
    taken_keys = set(Letter.objects.filter(mailbox=mailbox, dedupe_key__in=keys).values_list("dedupe_key", flat=True))
    uids = [item.uid for _key, item, _parsed in rows if item.uid is not None]
    taken_uids = set()
    if uids:
        taken_uids = set(
            Letter.objects.filter(mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid__in=uids).values_list(
                "uid", flat=True
            )
        )
    new, raws = [], []
    for key, item, parsed in rows:
        if key in taken_keys or item.uid in taken_uids:
            continue
        taken_keys.add(key)
        new.append(_letter(mailbox, key, item, parsed, origin, folder, uidvalidity, spam_folder))
        raws.append(item.raw)
    if new:
        try:
            with transaction.atomic():
                bulk.insert_letters(new, raws)
        except IntegrityError:
            new = _store_one_by_one(new, raws)  # another process stored some meanwhile
    return Stored(
        letters=new,
        malformed=sum(1 for letter in new if letter.malformed),
        truncated=sum(1 for letter in new if letter.truncated),
    )


def _store_one_by_one(letters: list[Letter], raws: list[bytes]) -> list[Letter]:
    stored = []
    for letter, raw in zip(letters, raws, strict=True):
        letter.pk = None
        try:
            with transaction.atomic():
                letter.save(force_insert=True)
                LetterSource.objects.create(letter_id=letter.pk, raw=raw)
            stored.append(letter)
        except IntegrityError:
            continue
    return stored


def _letter(mailbox, key, item: Incoming, parsed, origin, folder, uidvalidity, spam_folder) -> Letter:
    received_at = item.received_at or parsed.received_header_at or parsed.date_header or timezone.now()
    return Letter(
        mailbox=mailbox,
        origin=origin,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=item.uid,
        dedupe_key=key,
        message_id=_clean(parsed.message_id),
        received_at=received_at,
        date_header=parsed.date_header,
        date_header_offset=parsed.date_offset_minutes,
        sender_email=_clean(parsed.sender_email),
        sender_name=_clean(parsed.sender_name),
        subject=_clean(parsed.subject),
        recipients=_clean_json(parsed.recipients),
        in_reply_to=_clean(parsed.in_reply_to),
        references=_clean_json(parsed.references),
        text=_clean(parsed.text),
        attachments=_clean_json(parsed.attachments),
        size=item.size if item.size is not None else len(item.raw),
        truncated=item.truncated,
        headers=_clean_json(parsed.headers),
        malformed=parsed.malformed,
        parse_error=_clean(parsed.parse_error),
        not_lead_reason="spam folder" if spam_folder else "",
    )


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
    stored = store_letters(
        mailbox=mailbox,
        incoming=[Incoming(raw=raw, received_at=received_at, uid=uid)],
        origin=origin,
        folder=folder,
        uidvalidity=uidvalidity,
        spam_folder=is_spam_folder(folder),
    )
    return stored.letters[0] if stored.letters else None


def ingest_raw(*, mailbox: Mailbox, raw: bytes, origin: str = Letter.Origin.FILE, received_at=None) -> Letter | None:
    """A letter from a file (or the demo page) through the same pipeline."""
    letter = store_letter(mailbox=mailbox, raw=raw, received_at=received_at, origin=origin)
    if letter is not None:
        attribute_stored([letter.pk])
        letter.refresh_from_db()
    return letter


def attribute_stored(letter_ids: list[int]) -> None:
    """Turn stored letters into leads, in the order given (arrival order, so
    that a later letter can join an earlier one's lead), a batch at a time.
    When a batch fails, its letters are attributed one by one, so that a
    failure is recorded on the one letter that caused it; that letter stays
    stored and is retried later."""
    from attribution.batch import attribute_letters
    from attribution.services import attribute_letter

    for start in range(0, len(letter_ids), ATTRIBUTION_BATCH):
        chunk = letter_ids[start : start + ATTRIBUTION_BATCH]
        try:
            attribute_letters(chunk)
            continue
        except Exception:  # noqa: BLE001 - found out letter by letter below
            log.exception("Attribution of a batch of %s letters failed; attributing them one by one", len(chunk))
        for letter_id in chunk:
            try:
                attribute_letter(letter_id)
            except Exception as error:  # noqa: BLE001 - one bad letter must not stop the rest
                log.exception("Attribution failed for letter %s", letter_id)
                Letter.objects.filter(pk=letter_id).update(attribution_error=f"{type(error).__name__}: {error}"[:1000])


def attribute_pending(mailbox: Mailbox) -> int:
    """Attribute what earlier runs stored but did not attribute: all letters
    of runs that died between storing and attributing, and a bounded number
    of letters whose attribution failed before."""
    done, last_id = 0, 0
    never_tried = Letter.objects.filter(mailbox=mailbox, attributed_at__isnull=True, attribution_error="")
    while True:
        chunk = list(never_tried.filter(id__gt=last_id).order_by("id").values_list("id", flat=True)[:PENDING_CHUNK])
        if not chunk:
            break
        attribute_stored(chunk)
        done, last_id = done + len(chunk), chunk[-1]
    failed = (
        Letter.objects.filter(mailbox=mailbox, attributed_at__isnull=True)
        .exclude(attribution_error="")
        .order_by("id")
        .values_list("id", flat=True)[:FAILED_RETRY_LIMIT]
    )
    failed = list(failed)
    attribute_stored(failed)
    return done + len(failed)
