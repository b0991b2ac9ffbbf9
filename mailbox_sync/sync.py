"""The sync: read a mailbox's new letters, read-only, and store each once.

- One sync per mailbox at a time: a sync claims the mailbox with a
  conditional update and renews the claim with every batch. A claim left by
  a process that died on this host is taken over at once; one left on
  another host lapses after SYNC_CLAIM_SECONDS.
- A folder is first read by arrival date (INTERNALDATE since the mailbox's
  horizon: 24 hours before its first sync), then by UID above its
  high-water mark. A UIDVALIDITY change re-reads a date window.
- Each batch of letters and the folder's new high-water mark commit in one
  transaction, so a crash at any point re-reads, never skips; re-reading
  stores nothing twice (unique UID and Message-ID / raw hash).
- Fetching and parsing run ahead of storing: in a thread (prefetch.py), or,
  for a folder with many letters to read, in child processes (fetcher.py:
  one fetching on its own read-only connection, two parsing) while the
  stored letters are attributed on a thread of their own (attributing.py).
- A failure marks the mailbox failing with the reason and backs off (doubling
  up to an hour); it never raises, so other mailboxes go on.
"""

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from . import attributing, conf, credentials, grants, imap, parsing, replies, store
from .fetcher import ChildFetch
from .models import FolderState, Mailbox
from .prefetch import Prefetch

log = logging.getLogger(__name__)

BUSY = "Another sync holds this mailbox"
# UIDs whose size and arrival time are asked for at once (a few bytes each).
META_BATCH = 1000


@dataclass
class SyncResult:
    stored: int = 0
    seen: int = 0
    malformed: int = 0
    truncated: int = 0
    copies: int = 0  # letters stored before, seen again under another UID or folder
    replies: int = 0
    error: str = ""
    error_kind: str = ""
    # Where the time went: fetching and parsing (in the prefetch thread or
    # the fetching process, so it overlaps the rest), storing, and
    # attribution (on its own thread when the letters were fetched in a
    # child process, so it overlaps storing too).
    fetch_seconds: float = 0.0
    store_seconds: float = 0.0
    attribution_seconds: float = 0.0


class ClaimLost(Exception):
    """Another sync took the mailbox over (this one's claim had lapsed)."""


# --- Claims -------------------------------------------------------------------


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(mailbox_id: int, now: datetime) -> str | None:
    """Take the mailbox for one sync: a token, or None while another sync
    holds it. Any number of workers may race for it."""
    token = uuid.uuid4().hex
    fields = {"claimed_until": now + conf.claim_duration(), "claimed_by": _owner(), "claim_token": token}
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    if Mailbox.objects.filter(Q(pk=mailbox_id) & free).update(**fields) == 1:
        return token
    holder = Mailbox.objects.filter(pk=mailbox_id).values_list("claim_token", "claimed_by").first()
    if holder is not None and _holder_is_gone(holder[1]):
        if Mailbox.objects.filter(pk=mailbox_id, claim_token=holder[0]).update(**fields) == 1:
            log.warning("Mailbox %s: took over the claim of %s, which is no longer running", mailbox_id, holder[1])
            return token
    return None


def _holder_is_gone(owner: str) -> bool:
    """True only when the claim's process surely died: it ran on this host
    and its PID is gone. Claims from other hosts wait for their expiry."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


def _renew(mailbox_id: int, token: str) -> None:
    until = timezone.now() + conf.claim_duration()
    if Mailbox.objects.filter(pk=mailbox_id, claim_token=token).update(claimed_until=until) != 1:
        raise ClaimLost()


def due_mailbox_ids(now: datetime) -> list[int]:
    return list(
        Mailbox.objects.filter(active=True)
        .exclude(state=Mailbox.State.RECONNECT_NEEDED)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .values_list("id", flat=True)
    )


# --- The sync -----------------------------------------------------------------


def sync_mailbox(mailbox_id: int, *, progress=None, batch: int | None = None) -> SyncResult:
    """Read the mailbox's new letters (and, if watched, the Sent folder's new
    replies), store each once and attribute them. `batch`: letters fetched
    and committed together (default IMAP_FETCH_BATCH). Never raises."""
    token = claim(mailbox_id, timezone.now())
    if token is None:
        exists = Mailbox.objects.filter(pk=mailbox_id).exists()
        return SyncResult(error=BUSY if exists else "No such mailbox", error_kind="busy")
    mailbox = Mailbox.objects.get(pk=mailbox_id)
    result = SyncResult()
    try:
        _read(mailbox, token, result, progress, batch or conf.fetch_batch())
    except imap.SyncError as error:
        result.error, result.error_kind = str(error), error.kind
    except ClaimLost:
        log.warning("Mailbox %s: the claim lapsed and another sync took over; stopping", mailbox_id)
        return SyncResult(error=BUSY, error_kind="busy", stored=result.stored, seen=result.seen)
    except Exception as error:  # noqa: BLE001 - recorded on the mailbox, the other mailboxes go on
        log.exception("Sync of mailbox %s failed", mailbox_id)
        result.error, result.error_kind = f"Internal error: {type(error).__name__}: {error}", "internal"
    try:
        store.attribute_pending(mailbox)
        replies.rematch(mailbox, since=timezone.now() - conf.first_sync_window())
    except Exception:  # noqa: BLE001 - retried by the next sync
        log.exception("Mailbox %s: attributing pending letters failed", mailbox_id)
    _finish(mailbox, token, result)
    log.info(
        "Mailbox %s: %s new letters of %s read, %s unreadable; fetch and parse %.1fs, store %.1fs, attribution %.1fs%s",
        mailbox_id,
        result.stored,
        result.seen,
        result.malformed,
        result.fetch_seconds,
        result.store_seconds,
        result.attribution_seconds,
        f"; failed: {result.error}" if result.error else "",
    )
    return result


def secret_for(mailbox: Mailbox, *, fresh: bool = False) -> "str | imap.Bearer":
    """The password, or for an OAuth2 mailbox a live access token (`fresh`:
    the server refused the cached one, so a new one is asked for)."""
    try:
        if mailbox.auth == Mailbox.Auth.OAUTH2:
            if fresh:
                grants.forget_access_token(mailbox.pk)
            return imap.Bearer(grants.access_token(mailbox.pk)[1])
        return credentials.password_of(mailbox.password_encrypted)
    except credentials.CredentialsError as error:
        raise imap.SyncError(str(error), error.kind) from None


def _read(mailbox: Mailbox, token: str, result: SyncResult, progress, batch: int) -> None:
    if mailbox.sync_horizon is None:
        horizon = timezone.now() - conf.first_sync_window()
        Mailbox.objects.filter(pk=mailbox.pk, sync_horizon__isnull=True).update(sync_horizon=horizon)
        mailbox.sync_horizon = Mailbox.objects.values_list("sync_horizon", flat=True).get(pk=mailbox.pk)
    secret = secret_for(mailbox)
    try:
        _read_with(mailbox, secret, token, result, progress, batch)
    except imap.SyncError as error:
        if error.kind != imap.Failure.AUTH or not isinstance(secret, imap.Bearer):
            raise
        # An access token the server refused before its expiry (a revoked
        # session, clock skew): once more with a new one. Reading again is
        # harmless: storing is idempotent.
        _read_with(mailbox, secret_for(mailbox, fresh=True), token, result, progress, batch)


def _read_with(mailbox: Mailbox, secret, token: str, result: SyncResult, progress, batch: int) -> None:
    def connect():
        return imap.connect(mailbox, secret)

    problems = []
    with connect() as client:
        letter_folders, sent = plan_folders(client, mailbox, problems)
        for folder in letter_folders:
            try:
                _sync_folder(client, connect, mailbox, folder, token, result, progress, batch)
            except imap.SyncError as error:
                if error.kind != imap.Failure.FOLDER_MISSING:
                    raise
                problems.append(str(error))  # the other folders are still read
        if sent is not None:
            _sync_folder(client, connect, mailbox, sent, token, result, progress, batch, for_replies=True)
    if problems:
        raise imap.SyncError("; ".join(problems), imap.Failure.FOLDER_MISSING)


def plan_folders(client, mailbox: Mailbox, problems: list[str]):
    """The folders to read for letters, and the Sent folder when watched."""
    listing = imap.list_folders(client)
    by_name = {folder.name: folder for folder in listing}
    if mailbox.folder_mode == Mailbox.FolderMode.ALL:
        chosen = [folder for folder in listing if folder.holds_letters]
        chosen.sort(key=lambda folder: (folder.name.upper() != "INBOX", folder.name))
    else:
        chosen = [by_name.get(name) or imap.Folder(name, frozenset()) for name in mailbox.folder_names]
    sent = None
    if mailbox.watch_sent:
        candidates = sorted((f for f in listing if f.is_sent), key=lambda f: b"\\sent" not in f.flags)
        sent = candidates[0] if candidates else None
        if sent is None:
            problems.append("Sent folder not found: replies cannot be read")
        chosen = [folder for folder in chosen if sent is None or folder.name != sent.name]
    return chosen, sent


def _sync_folder(
    client, connect, mailbox, folder: imap.Folder, token, result: SyncResult, progress, batch, for_replies=False
):
    uidvalidity, uidnext = imap.select_readonly(client, folder.name)
    state = _folder_state(mailbox, folder.name, uidvalidity)
    window = state.window_since
    if window is not None:
        uids = [uid for uid in imap.uids_since(client, window) if uid > state.last_uid]
    else:
        uids = imap.uids_above(client, state.last_uid)
    if progress is not None:
        progress.start(folder.name, len(uids))

    def produce(client):
        # In the prefetch thread or the fetching process: IMAP only, no
        # database. Yields each run of UIDs with its fetched letters and the
        # seconds they took.
        for chunk in imap.batches(uids, META_BATCH):
            started = time.perf_counter()
            metas = imap.fetch_meta(client, chunk)
            for run, wanted in _segments(chunk, metas, window, batch):
                if for_replies:
                    items = imap.fetch_headers(client, wanted, metas) if wanted else []
                else:
                    items = imap.fetch_letters(client, wanted, metas) if wanted else []
                yield run, items, time.perf_counter() - started
                started = time.perf_counter()

    def prepare(produced):
        # Where the fetching ran, or in a process of its own: the letters parsed.
        run, fetched, seconds = produced
        if for_replies:
            return produced
        started = time.perf_counter()
        items = [_incoming(message, mailbox.text_limit) for message in fetched]
        return run, items, seconds + time.perf_counter() - started

    # Stored letters wait for attribution until a few batches' worth are
    # there (a batch of letters costs the same few queries whatever its
    # size; on a thread of its own, attribution starts on the first batch
    # at once: attributing.py), then are attributed while the next ones are
    # stored; letters a crash leaves unattributed are picked up by the next
    # sync's attribute_pending.
    unattributed: list = []
    fetching = _start_fetching(
        client, connect, folder, uidvalidity, produce, prepare, many=len(uids), for_replies=for_replies
    )
    # Attribution on a thread of its own only when the fetching and parsing
    # left this process: otherwise the threads would take turns on one core.
    attribution = attributing.start_attribution(background=isinstance(fetching, ChildFetch))

    def attribute(at_least: int) -> None:
        if len(unattributed) >= max(at_least, 1):
            attribution.add(unattributed[:])
            unattributed.clear()

    try:
        with fetching as batches:
            for run, items, seconds in batches:
                result.fetch_seconds += seconds
                result.seen += len(items)
                started = time.perf_counter()
                # The letters and the high-water mark commit together: a crash
                # either keeps both or neither, so nothing is ever skipped.
                outermost = not connection.in_atomic_block
                with transaction.atomic():
                    if outermost:
                        _commit_without_waiting_for_the_disk()
                    if for_replies:
                        new = replies.store_replies(
                            mailbox=mailbox, fetched=items, folder=folder.name, uidvalidity=uidvalidity
                        )
                    else:
                        stored = store.store_letters(
                            mailbox=mailbox,
                            incoming=items,
                            folder=folder.name,
                            uidvalidity=uidvalidity,
                            spam_folder=folder.is_spam,
                        )
                    FolderState.objects.filter(pk=state.pk).update(last_uid=run[-1], last_synced_at=timezone.now())
                    _renew(mailbox.pk, token)
                stored_at = time.perf_counter()
                result.store_seconds += stored_at - started
                if for_replies:
                    result.replies += len(new)
                    replies.match_replies(mailbox, new)
                    result.attribution_seconds += time.perf_counter() - stored_at
                else:
                    result.stored += len(stored.letters)
                    result.malformed += stored.malformed
                    result.truncated += stored.truncated
                    result.copies += stored.copies
                    unattributed.extend(stored.letters)  # as stored: attribution need not read them back
                    attribute(attribution.gather())
                if progress is not None:
                    progress.advance(len(run))
        attribute(0)
        attribution.finish()
    except BaseException:
        attribution.abandon()
        raise
    finally:
        result.attribution_seconds += attribution.seconds
    done = {"last_synced_at": timezone.now()}
    if window is not None:
        # Letters below UIDNEXT that the window left out are older than it:
        # later syncs must not read them as new.
        done.update(window_since=None, last_uid=Greatest(F("last_uid"), max(uidnext - 1, 0)))
    FolderState.objects.filter(pk=state.pk).update(**done)


def _commit_without_waiting_for_the_disk() -> None:
    """A batch's commit need not wait for PostgreSQL to flush its log: were
    the server to crash before it did, the batch's letters and the folder's
    high-water mark would be lost together and read again, nothing skipped
    and nothing doubled. What others act on waits as before: attribution's
    own commit (which announces leads) waits for the flush, and with it for
    every batch committed before it; so does the sync's last update."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _start_fetching(
    client, connect, folder: imap.Folder, uidvalidity: int, produce, prepare, *, many: int, for_replies: bool
):
    """Child processes for a folder with many letters to read, one fetching
    and SYNC_PARSE_PROCESSES parsing (replies need only headers: not worth
    it), else the prefetch thread doing both."""
    if many >= conf.fetch_process_min_letters() and not for_replies:
        try:
            return ChildFetch(connect, folder.name, uidvalidity, produce, prepare, conf.parse_processes())
        except (AssertionError, OSError) as error:  # a daemonic worker, or no memory or processes left
            log.warning("Fetching in a process of its own failed to start (%s); fetching in a thread", error)
    return Prefetch(lambda: map(prepare, produce(client)))


def _incoming(message: imap.FetchedMessage, text_limit: int) -> store.Incoming:
    parsed = parsing.parse(message.raw, text_limit)
    if message.attachments is not None:  # a truncated letter: the server listed them all
        parsed.attachments = message.attachments
    return store.Incoming(message.raw, message.internal_date, message.uid, message.size, message.truncated, parsed)


def _segments(uids: list[int], metas: dict, window: datetime | None, most: int):
    """Consecutive runs of UIDs whose wanted letters fit one fetch: at most
    `most` letters and IMAP_FETCH_BATCH_BYTES bytes (a single bigger letter
    goes alone). Yields (run, wanted UIDs)."""
    budget = conf.fetch_batch_bytes()
    limit, kept = conf.letter_max_bytes(), conf.truncated_body_bytes()
    run, wanted, size = [], [], 0
    for uid in uids:
        meta = metas.get(uid)  # None: expunged since the SEARCH
        if meta is not None and (window is None or meta.internal_date >= window):
            cost = meta.size if meta.size <= limit else kept
            if wanted and (len(wanted) >= most or size + cost > budget):
                yield run, wanted
                run, wanted, size = [], [], 0
            wanted.append(uid)
            size += cost
        run.append(uid)
    if run:
        yield run, wanted


def _folder_state(mailbox: Mailbox, name: str, uidvalidity: int) -> FolderState:
    state = FolderState.objects.filter(mailbox=mailbox, name=name).first()
    if state is None:
        try:
            with transaction.atomic():
                return FolderState.objects.create(
                    mailbox=mailbox, name=name, uidvalidity=uidvalidity, window_since=mailbox.sync_horizon
                )
        except IntegrityError:
            state = FolderState.objects.get(mailbox=mailbox, name=name)
    if state.uidvalidity != uidvalidity:
        # The server renumbered the folder: re-read by date from a little
        # before the last sync; Message-ID / hash de-duplication keeps
        # letters already stored from being stored again.
        since = (state.last_synced_at or timezone.now()) - conf.first_sync_window()
        since = max(since, mailbox.sync_horizon) if mailbox.sync_horizon else since
        log.warning("Mailbox %s folder %r: UIDVALIDITY changed; re-reading since %s", mailbox.pk, name, since)
        FolderState.objects.filter(pk=state.pk).update(uidvalidity=uidvalidity, last_uid=0, window_since=since)
        state.uidvalidity, state.last_uid, state.window_since = uidvalidity, 0, since
    return state


def _finish(mailbox: Mailbox, token: str, result: SyncResult) -> None:
    now = timezone.now()
    fields = {"last_sync_at": now, "claimed_until": None, "claimed_by": "", "claim_token": ""}
    if result.error_kind == imap.Failure.RECONNECT:
        # Only the account manager can help: no retries until then.
        fields.update(state=Mailbox.State.RECONNECT_NEEDED, last_error=result.error[:2000], last_error_at=now)
    elif result.error:
        failures = mailbox.failure_count + 1
        interval = timedelta(minutes=mailbox.sync_interval_minutes)
        backoff = min(interval * 2 ** min(failures - 1, 16), conf.max_backoff())
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
    Mailbox.objects.filter(pk=mailbox.pk, claim_token=token).update(**fields)
