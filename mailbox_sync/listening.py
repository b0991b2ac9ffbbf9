"""The listener's database side: which mailboxes a listener process holds
(a lease per mailbox in `Listening`, renewed while the process lives, taken
over once it lapses), the share each process takes when several run, and
the state admin shows per mailbox. Plain synchronous code: the asyncio
listener calls it on a thread of its own.
"""

import math
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q

from lib.lookups import AnyOf

from . import conf, credentials, imap, sync
from .models import FolderState, ListenerProcess, Listening, Mailbox


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Held:
    """A mailbox as the listener connects to it. Any change to these fields
    (in admin) makes the listener connect again."""

    mailbox_id: int
    host: str
    port: int
    security: str
    username: str
    password_encrypted: str
    folders: tuple[str, ...]  # INBOX (or the first listed folder), and Sent when watched
    auth: str
    watch_sent: bool


# A listener not seen for this long is forgotten.
GONE_AFTER = timedelta(days=1)
# What `_held` reads of a mailbox, after its id.
HELD_FIELDS = (
    "host",
    "port",
    "security",
    "username",
    "password_encrypted",
    "auth",
    "watch_sent",
    "folder_mode",
    "folders",
)


def listened_folder(mailbox: Mailbox) -> str:
    """The folder whose new letters the listener hears: INBOX, unless only
    other folders are watched (then the first of them)."""
    return _listened_folder(mailbox.folder_mode, mailbox.folders)


def _listened_folder(folder_mode: str, folders: str) -> str:
    if folder_mode == Mailbox.FolderMode.ALL:
        return "INBOX"
    names = Mailbox.split_folders(folders)
    return "INBOX" if any(name.upper() == "INBOX" for name in names) else names[0]


def _held(row: tuple, sent_folder: str | None) -> Held:
    """A Held from a row of ("id", *HELD_FIELDS)."""
    pk, host, port, security, username, password_encrypted, auth, watch_sent, folder_mode, folders = row
    listened = (_listened_folder(folder_mode, folders),) + ((sent_folder,) if sent_folder else ())
    return Held(pk, host, port, security, username, password_encrypted, listened, auth, watch_sent)


def _listenable():
    return Mailbox.objects.filter(active=True).exclude(state=Mailbox.State.RECONNECT_NEEDED)


def refresh(name: str, now: datetime, sent_folders: dict[int, str | None]) -> dict[int, Held]:
    """Renew this process's leases and take its share of the mailboxes no
    live process holds; give back the ones switched off, deleted, or above
    its share (another process takes them). Returns what it now holds.
    `sent_folders`: the Sent folder found for a mailbox that watches it.

    It runs every few seconds in a process holding a thousand mailboxes, so
    it renews the leases it keeps with one statement (no list of ids), and
    reads what it holds as plain rows rather than model instances."""
    until = now + conf.listener_lease()
    if not ListenerProcess.objects.filter(name=name).update(seen_at=now):
        ListenerProcess.objects.create(name=name, seen_at=now)
    ListenerProcess.objects.filter(seen_at__lt=now - GONE_AFTER).delete()  # listeners that died long ago
    live = ListenerProcess.objects.filter(seen_at__gt=now - conf.listener_lease()).count()
    listenable = _listenable()
    total = listenable.count()
    share = min(conf.listener_capacity(), math.ceil(total / max(live, 1)))
    mine = Listening.objects.filter(listener=name)
    with transaction.atomic():
        mine.exclude(mailbox__in=listenable).update(listener="", held_until=None)
        kept = mine.update(held_until=until)
        if kept > share:
            over = list(mine.order_by("mailbox_id").values_list("pk", flat=True)[share:])
            Listening.objects.filter(AnyOf("pk", over)).update(listener="", held_until=None)
            kept = share
    wanted = share - kept
    if wanted > 0:
        unlisted = listenable.filter(listening__isnull=True).values_list("pk", flat=True)
        Listening.objects.bulk_create(
            [Listening(mailbox_id=pk, listener="", state_since=now) for pk in unlisted], ignore_conflicts=True
        )
        with transaction.atomic():
            free = (
                Listening.objects.filter(mailbox__in=listenable)
                .filter(Q(held_until__isnull=True) | Q(held_until__lt=now))
                .select_for_update(skip_locked=True)
                .order_by("held_until", "mailbox_id")
                .values_list("pk", flat=True)[:wanted]
            )
            taken = list(free)
            if taken:
                Listening.objects.filter(AnyOf("pk", taken)).update(listener=name, held_until=until)
    rows = Mailbox.objects.filter(listening__listener=name, active=True).values_list("pk", *HELD_FIELDS)
    return {row[0]: _held(row, sent_folders.get(row[0])) for row in rows}


def release_all(name: str) -> None:
    """A listener stopping: its mailboxes are free for another at once."""
    Listening.objects.filter(listener=name).update(listener="", held_until=None)
    ListenerProcess.objects.filter(name=name).delete()


def record_states(name: str, states: dict[int, tuple[str, datetime, str]]) -> None:
    """Each mailbox's state, since when, and why (for "reconnecting" and
    "reconnect needed"), while this process holds it."""
    for mailbox_id, (state, since, why) in states.items():
        Listening.objects.filter(pk=mailbox_id, listener=name).update(
            state=state, state_since=since, last_error=why[:2000]
        )


def record_letters_seen(name: str, seen: dict[int, datetime]) -> None:
    for mailbox_id, at in seen.items():
        Listening.objects.filter(pk=mailbox_id, listener=name).update(last_letter_at=at)


def unread_letters_waiting(mailbox_id: int, folder: str, uidvalidity: int, uidnext: int) -> bool:
    """Whether the folder (as EXAMINE described it) has letters the sync has
    not read: renumbered, or UIDs above the high-water mark. A folder never
    read, or a server that gives no UIDNEXT, counts as waiting."""
    state = FolderState.objects.filter(mailbox_id=mailbox_id, name=folder).values_list(
        "uidvalidity", "last_uid", "window_since"
    )
    found = state.first()
    if found is None or not uidnext:
        return True
    known_uidvalidity, last_uid, window_since = found
    return known_uidvalidity != uidvalidity or uidnext > last_uid + 1 or window_since is not None


def sent_folder(mailbox_id: int) -> str | None:
    """The Sent folder the sync reads replies from (by its special-use flag
    or usual name), found with one short connection."""
    mailbox = Mailbox.objects.filter(pk=mailbox_id).first()
    if mailbox is None or not mailbox.watch_sent:
        return None
    try:
        with imap.connect(mailbox, credentials.password_of(mailbox.password_encrypted)) as client:
            _letters, sent = sync.plan_folders(client, mailbox, [])
    except (imap.SyncError, credentials.CredentialsError):
        return None
    return sent.name if sent is not None else None
