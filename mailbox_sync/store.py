"""Storing letters exactly once, from IMAP or from files, and announcing
them ("letters stored", `events`) for attribution.

Every letter goes through `store_letters`, which takes raw RFC 822 bytes.
No letter is dropped: every UID is stored once, as a letter or as a copy of
the same letter stored before (`identity`: the same Message-ID and content).
The unique (mailbox, folder, UIDVALIDITY, UID) constraints of letters and
copies and the unique (mailbox, digest) of letters make storing idempotent;
a batch costs the same few queries whatever its size (look up what is
stored, insert the rest).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from lib.lookups import AnyOf

from . import bulk, events, identity, parsing
from .imap import is_spam_folder
from .models import Letter, LetterCopy, LetterSource, Mailbox

# Letters announced again per query of pending ones.
PENDING_CHUNK = 500
# Letters announced together (attribution shares their reads and writes).
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


class Seen(models.TextChoices):
    """What storing made of one incoming letter."""

    STORED = "stored", "stored"
    COPY = "copy", "same letter already stored"
    KNOWN_UID = "known_uid", "this UID was read before"


@dataclass
class Outcome:
    seen: str
    letter_id: int | None = None  # the letter stored, or the one this is a copy of
    reused_by: list[int] = field(default_factory=list)  # other letters with the same Message-ID


@dataclass
class Stored:
    letters: list[Letter] = field(default_factory=list)
    malformed: int = 0
    truncated: int = 0
    copies: int = 0
    outcomes: list[Outcome] = field(default_factory=list)  # one per incoming letter, in order


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


@dataclass
class _Batch:
    """What storing one batch decided, letter by letter. A letter of the
    batch is referred to by its object until it has an id."""

    new: list[Letter] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)
    copies: list[tuple[LetterCopy, Letter | int]] = field(default_factory=list)  # each copy and its letter
    decided: list[tuple[str, Letter | int | None, list]] = field(default_factory=list)  # per incoming letter
    flag_reused: set[int] = field(default_factory=set)  # letters stored before whose Message-ID is now reused
    replaced: dict[int, int] = field(default_factory=dict)  # id(new letter) → the letter stored meanwhile


def store_letters(
    *,
    mailbox: Mailbox,
    incoming: list[Incoming],
    origin: str = Letter.Origin.IMAP,
    folder: str = "",
    uidvalidity: int | None = None,
    spam_folder: bool = False,
) -> Stored:
    """Store every letter not stored yet; each letter is parsed once.

    - A UID read before (as a letter or as a copy) is skipped: exactly once per UID.
    - The same letter seen again (the same content digest: the same
      Message-ID and the same bytes but for delivery headers) is recorded as
      a copy of the stored one, also within the batch: no second letter and
      no second lead.
    - A letter whose Message-ID another letter of the project carries with
      other content is stored as a letter of its own, and both are flagged
      "Message-ID reused".

    A batch costs the same few queries whatever its size."""
    rows = []
    for item in incoming:
        parsed = item.parsed or parsing.parse(item.raw, mailbox.text_limit)
        rows.append((parsed.digest or identity.content_digest(item.raw), item, parsed))
    by_key, by_message_id = _known(mailbox, rows)
    taken_uids = _taken_uids(mailbox, folder, uidvalidity, [item.uid for _key, item, _parsed in rows])

    batch = _Batch()
    for key, item, parsed in rows:
        if item.uid is not None:
            if item.uid in taken_uids:
                batch.decided.append((Seen.KNOWN_UID, None, []))
                continue
            taken_uids.add(item.uid)
        same = by_key.get(key)
        if same is not None:
            batch.copies.append((_copy(mailbox, item, parsed, origin, folder, uidvalidity), same))
            batch.decided.append((Seen.COPY, same, []))
            continue
        letter = _letter(mailbox, key, item, parsed, origin, folder, uidvalidity, spam_folder)
        others = [other for other, other_key in by_message_id.get(letter.message_id, ()) if other_key != key]
        for other in others:
            letter.message_id_reused = True
            if isinstance(other, Letter):
                other.message_id_reused = True
            else:
                batch.flag_reused.add(other)
        if letter.message_id:
            by_message_id[letter.message_id].append((letter, key))
        by_key[key] = letter
        batch.new.append(letter)
        batch.raws.append(item.raw)
        batch.decided.append((Seen.STORED, letter, others))
    return _write(mailbox, batch)


def _known(mailbox: Mailbox, rows) -> tuple[dict, dict]:
    """The letters stored before that share a digest with the batch's letters
    (in this mailbox) or a Message-ID (in the project), in one query."""
    keys = {key for key, _item, _parsed in rows}
    message_ids = {_clean(parsed.message_id) for _key, _item, parsed in rows} - {""}
    by_key: dict[str, Letter | int] = {}
    by_message_id: dict[str, list[tuple[Letter | int, str]]] = defaultdict(list)
    same_mailbox = Q(AnyOf("dedupe_key", keys), mailbox=mailbox)
    if message_ids:
        same_mailbox |= Q(AnyOf("message_id", message_ids), mailbox__project_id=mailbox.project_id)
    known = Letter.objects.filter(same_mailbox).order_by("id")
    for letter_id, mailbox_id, key, message_id in known.values_list("id", "mailbox_id", "dedupe_key", "message_id"):
        if mailbox_id == mailbox.pk and key in keys:
            by_key.setdefault(key, letter_id)
        if message_id in message_ids:
            by_message_id[message_id].append((letter_id, key))
    return by_key, by_message_id


def _taken_uids(mailbox: Mailbox, folder: str, uidvalidity: int | None, uids: list[int | None]) -> set[int]:
    """The UIDs among `uids` read before, as letters or as copies."""
    uids = [uid for uid in uids if uid is not None]
    if not uids:
        return set()
    where = {"mailbox": mailbox, "folder": folder, "uidvalidity": uidvalidity}
    letters = Letter.objects.filter(AnyOf("uid", uids), **where).values_list("uid", flat=True).order_by()
    copies = LetterCopy.objects.filter(AnyOf("uid", uids), **where).values_list("uid", flat=True).order_by()
    return set(letters.union(copies, all=True))


def _write(mailbox: Mailbox, batch: _Batch) -> Stored:
    stored = batch.new
    if stored:
        try:
            with transaction.atomic():
                bulk.insert_letters(stored, batch.raws)
        except IntegrityError:
            stored = _store_one_by_one(mailbox, batch)  # another process stored some meanwhile
    if batch.flag_reused:
        Letter.objects.filter(pk__in=batch.flag_reused, message_id_reused=False).update(message_id_reused=True)

    def letter_id(letter: Letter | int | None) -> int | None:
        if letter is None or isinstance(letter, int):
            return letter
        return letter.pk or batch.replaced.get(id(letter))

    copies = []
    for copy, letter in batch.copies:
        copy.letter_id = letter_id(letter)
        if copy.letter_id is not None:
            copies.append(copy)
    _store_copies(copies)
    outcomes = []
    for seen, letter, others in batch.decided:
        if seen == Seen.STORED and letter.pk is None:
            seen = Seen.COPY if id(letter) in batch.replaced else Seen.KNOWN_UID
        outcomes.append(Outcome(seen, letter_id(letter), [letter_id(other) for other in others]))
    return Stored(
        letters=stored,
        malformed=sum(1 for letter in stored if letter.malformed),
        truncated=sum(1 for letter in stored if letter.truncated),
        copies=len(copies),
        outcomes=outcomes,
    )


def _store_one_by_one(mailbox: Mailbox, batch: _Batch) -> list[Letter]:
    """Each new letter on its own: one that another process stored meanwhile
    (the same digest) becomes a copy of that one; one whose UID was stored
    meanwhile is left out."""
    stored = []
    for letter, raw in zip(batch.new, batch.raws, strict=True):
        letter.pk = None
        try:
            with transaction.atomic():
                letter.save(force_insert=True)
                LetterSource.objects.create(letter_id=letter.pk, raw=raw)
            stored.append(letter)
        except IntegrityError:
            letter.pk = None
            existing = Letter.objects.filter(mailbox=mailbox, dedupe_key=letter.dedupe_key).values_list("id", flat=True)
            if existing:
                batch.replaced[id(letter)] = existing[0]
                batch.copies.append((_copy_of_letter(letter), existing[0]))
    return stored


def _store_copies(copies: list[LetterCopy]) -> None:
    if not copies:
        return
    try:
        with transaction.atomic():
            LetterCopy.objects.bulk_create(copies)
    except IntegrityError:  # a copy's UID stored meanwhile
        for copy in copies:
            copy.pk = None
            try:
                with transaction.atomic():
                    copy.save(force_insert=True)
            except IntegrityError:
                continue


def _copy(mailbox, item: Incoming, parsed, origin, folder, uidvalidity) -> LetterCopy:
    return LetterCopy(
        mailbox=mailbox,
        origin=origin,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=item.uid,
        received_at=_arrival(item, parsed),
    )


def _copy_of_letter(letter: Letter) -> LetterCopy:
    return LetterCopy(
        mailbox_id=letter.mailbox_id,
        origin=letter.origin,
        folder=letter.folder,
        uidvalidity=letter.uidvalidity,
        uid=letter.uid,
        received_at=letter.received_at,
    )


def _arrival(item: Incoming, parsed) -> datetime:
    """When the letter reached the mailbox: INTERNALDATE, else the top Received
    header, else the Date header unless it is in the future (a sender's clock
    years ahead would keep the letter at the top of the journal), else now."""
    now = timezone.now()
    if item.received_at or parsed.received_header_at:
        return item.received_at or parsed.received_header_at
    if parsed.date_header and parsed.date_header <= now:
        return parsed.date_header
    return now


def _letter(mailbox, key, item: Incoming, parsed, origin, folder, uidvalidity, spam_folder) -> Letter:
    values = dict(
        mailbox_id=mailbox.pk,
        origin=origin,
        folder=folder,
        uidvalidity=uidvalidity,
        uid=item.uid,
        dedupe_key=key,
        message_id=_clean(parsed.message_id),
        received_at=_arrival(item, parsed),
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
    return bulk.new_instance(Letter, values, {"mailbox": mailbox})


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
    """Store one letter; None when it was stored before (then it is recorded
    as a copy of that letter). `received_at` is the arrival time (IMAP
    INTERNALDATE); for files it is taken from the top Received header, else
    the Date header, else now."""
    stored = _store_one(mailbox, raw, received_at, origin, folder, uidvalidity, uid)
    return stored.letters[0] if stored.letters else None


def _store_one(mailbox, raw, received_at, origin, folder="", uidvalidity=None, uid=None) -> Stored:
    return store_letters(
        mailbox=mailbox,
        incoming=[Incoming(raw=raw, received_at=received_at, uid=uid)],
        origin=origin,
        folder=folder,
        uidvalidity=uidvalidity,
        spam_folder=is_spam_folder(folder),
    )


def ingest_letter(
    *, mailbox: Mailbox, raw: bytes, origin: str = Letter.Origin.FILE, received_at=None
) -> tuple[Outcome, Letter | None]:
    """A letter from a file (or the demo page) through the same pipeline:
    stored and attributed, or recorded as a copy of the same letter stored
    before. Returns what became of it and the letter it is (or is a copy of)."""
    outcome = _store_one(mailbox, raw, received_at, origin).outcomes[0]
    if outcome.seen == Seen.STORED:
        attribute_stored([outcome.letter_id])
    letter = Letter.objects.filter(pk=outcome.letter_id).first() if outcome.letter_id else None
    return outcome, letter


def ingest_raw(*, mailbox: Mailbox, raw: bytes, origin: str = Letter.Origin.FILE, received_at=None) -> Letter | None:
    """As ingest_letter; the new letter, or None when it was stored before."""
    outcome, letter = ingest_letter(mailbox=mailbox, raw=raw, origin=origin, received_at=received_at)
    return letter if outcome.seen == Seen.STORED else None


def attribute_stored(letter_ids: list, *, most: int | None = None) -> None:
    """Hand stored letters on to be turned into leads, in the order given
    (arrival order, so that a later letter can join an earlier one's lead),
    `most` (default ATTRIBUTION_BATCH) at a time: announced as "letters
    stored" (`events`), which attribution listens to. `letter_ids` may hold
    the stored Letter objects themselves: their ids are announced, with the
    letters as stored for a listener to read instead of the database."""
    most = most or ATTRIBUTION_BATCH
    for start in range(0, len(letter_ids), most):
        chunk = letter_ids[start : start + most]
        if any(isinstance(letter, Letter) for letter in chunk):
            chunk = events.StoredLetters(chunk)
        events.letters_stored(chunk)


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
