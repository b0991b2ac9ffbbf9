"""The listener (`python manage.py listen_mailboxes`): one process keeps an
IMAP IDLE connection per active mailbox's inbox (and its Sent folder when
response time is on), on one asyncio loop, and hands a mailbox whose folder
announced a new letter to the sync (`sync.sync_mailbox`: the same claimed,
exactly-once, read-only pipeline as the poll), debounced so that a burst of
letters is one sync.

- Which mailboxes: `listening.refresh`, every IDLE_REFRESH_SECONDS (leases in
  PostgreSQL; several processes share the mailboxes, a dead one's lapse).
  A mailbox changed in admin is connected again; one switched off, deleted
  or handed to another process is let go.
- Each connection sends DONE at most every IDLE_PING_SECONDS and begins IDLE
  again (on a grid shared by all, `idle.turn_at`, so that they come in
  batches): no answer within IDLE_ANSWER_SECONDS and it is taken for dead.
- A failed connection is retried with exponential backoff and jitter; on
  every (re)connection the folder is compared with what the sync has read
  (UIDVALIDITY, UIDNEXT), so a letter that came while it was down is read
  at once. A server without IDLE is left to the poll.
- The 10-minute poll stays: a sync claims its mailbox, and storing is
  idempotent, so the listener's sync and the poll's never store a letter twice.
"""

import asyncio
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import close_old_connections
from django.utils import timezone

from . import conf, credentials, grants, idle, listening, sync
from .imap import Failure
from .models import Listening

log = logging.getLogger(__name__)

# How worse states win when a mailbox has two folders listened to.
_RANK = {
    Listening.State.LISTENING: 0,
    Listening.State.POLLING: 1,
    Listening.State.RECONNECTING: 2,
    Listening.State.RECONNECT_NEEDED: 3,
}
# A sync that finds the mailbox claimed by another is tried again this often, this many times.
BUSY_RETRY_SECONDS = 2.0
BUSY_RETRIES = 30
TOKEN_THREADS = 2


def backoff(attempt: int) -> float:
    """Seconds before the attempt-th reconnection: doubling, capped, with
    jitter (half to the whole of it) so that many mailboxes of one server
    do not come back together."""
    first, most = conf.idle_backoff_seconds()
    delay = min(most, first * 2 ** min(attempt, 30))
    return delay * random.uniform(0.5, 1.0)


class _Watch:
    """The connections of one held mailbox: a task per folder."""

    def __init__(self, held: listening.Held):
        self.held = held
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []
        self.states: dict[str, tuple[str, str]] = {}


class Listener:
    def __init__(self, name: str | None = None):
        self.name = name or listening.process_name()
        self.timing = idle.Timing(
            connect=conf.imap_timeout(), answer=conf.idle_answer_seconds(), ping=conf.idle_ping_seconds()
        )
        self.watches: dict[int, _Watch] = {}
        self.sent_folders: dict[int, str | None] = {}
        self.jobs: dict[int, asyncio.Task] = {}
        self.again: set[int] = set()
        self.pending_states: dict[int, tuple] = {}
        self.pending_seen: dict = {}
        self.recorded: dict[int, tuple[str, str]] = {}
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="listener-db")
        self._sync_threads = ThreadPoolExecutor(conf.idle_sync_threads(), thread_name_prefix="listener-sync")
        # Access tokens on threads of their own: a slow token endpoint holds
        # up only the OAuth2 logins waiting for it, not the leases and states.
        self._token_threads = ThreadPoolExecutor(TOKEN_THREADS, thread_name_prefix="listener-token")
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()

    # --- Running -------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop from any thread (or a signal handler)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._connects = asyncio.Semaphore(conf.idle_connects_at_once())
        flusher = asyncio.ensure_future(self._flush_forever())
        self.started.set()
        log.info("Listener %s started", self.name)
        try:
            while not self._stop.is_set():
                try:
                    held = await self._db(listening.refresh, self.name, timezone.now(), dict(self.sent_folders))
                except Exception:  # noqa: BLE001 - the database may come back; the connections go on meanwhile
                    log.exception("Listener %s: reading the mailboxes failed", self.name)
                else:
                    self._apply(held)
                await self._pause(conf.listener_refresh_seconds())
        finally:
            await self._shutdown(flusher)

    async def _shutdown(self, flusher: asyncio.Task) -> None:
        for watch in self.watches.values():
            watch.stop.set()
        tasks = [task for watch in self.watches.values() for task in watch.tasks]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.timing.answer + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        jobs = [job for job in self.jobs.values() if not job.done()]
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        try:
            await self._flush()
            await self._db(listening.release_all, self.name)
        except Exception:  # noqa: BLE001 - the leases lapse by themselves
            log.exception("Listener %s: releasing its mailboxes failed", self.name)
        self._sync_threads.shutdown(wait=True)
        self._token_threads.shutdown(wait=True)
        await self._db(close_old_connections)
        self._db_thread.shutdown(wait=True)
        log.info("Listener %s stopped", self.name)

    async def _pause(self, seconds: float, stop: asyncio.Event | None = None) -> None:
        """Sleep, waking early when the listener (or `stop`) stops."""
        waits = [asyncio.ensure_future(self._stop.wait())]
        if stop is not None:
            waits.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _db(self, function, *args):
        def call():
            close_old_connections()
            return function(*args)

        return await self._loop.run_in_executor(self._db_thread, call)

    # --- Which mailboxes -----------------------------------------------------

    def _apply(self, held: dict[int, listening.Held]) -> None:
        for mailbox_id in list(self.watches):
            watch = self.watches[mailbox_id]
            now_held = held.get(mailbox_id)
            if now_held is None or now_held != watch.held:
                watch.stop.set()
                del self.watches[mailbox_id]
                self.recorded.pop(mailbox_id, None)
                if now_held is None:
                    self.sent_folders.pop(mailbox_id, None)
        for mailbox_id, mailbox in held.items():
            if mailbox_id in self.watches:
                continue
            watch = _Watch(mailbox)
            self.watches[mailbox_id] = watch
            for folder in mailbox.folders:
                watch.tasks.append(asyncio.ensure_future(self._watch_folder(watch, folder)))
            if mailbox.watch_sent and mailbox_id not in self.sent_folders:
                asyncio.ensure_future(self._find_sent(mailbox_id))

    async def _find_sent(self, mailbox_id: int) -> None:
        self.sent_folders[mailbox_id] = None  # asked once per hold; the next refresh adds it
        try:
            found = await self._loop.run_in_executor(self._sync_threads, _sent_folder, mailbox_id)
        except Exception:  # noqa: BLE001 - replies are still read by the syncs
            log.exception("Mailbox %s: finding its Sent folder failed", mailbox_id)
            return
        self.sent_folders[mailbox_id] = found

    # --- One folder ----------------------------------------------------------

    async def _watch_folder(self, watch: _Watch, folder: str) -> None:
        mailbox_id, attempt = watch.held.mailbox_id, 0
        while not watch.stop.is_set() and not self._stop.is_set():
            connection = None
            try:
                async with self._connects:
                    connection = await idle.open_connection(
                        watch.held.host, watch.held.port, watch.held.security, self.timing
                    )
                    await self._log_in(connection, watch.held)
                    examined = await connection.examine(folder) if connection.can_idle else None
                if examined is None:  # no IDLE: the poll reads it; asked again later
                    self._state(watch, folder, Listening.State.POLLING, "")
                    await connection.logout()
                    connection = None
                    await self._pause(conf.idle_recheck_seconds(), watch.stop)
                    continue
                self._state(watch, folder, Listening.State.LISTENING, "")
                attempt = 0
                waiting = await self._db(
                    listening.unread_letters_waiting, mailbox_id, folder, examined.uidvalidity, examined.uidnext
                )
                if waiting:
                    self._want_sync(mailbox_id)
                await connection.idle(
                    on_new=lambda: self._heard(mailbox_id),
                    on_renumbered=lambda: self._want_sync(mailbox_id),
                    stop=watch.stop,
                )
                await connection.logout()
                connection = None
            except credentials.ReconnectNeeded as error:
                self._state(watch, folder, Listening.State.RECONNECT_NEEDED, str(error))
                await self._pause(conf.idle_recheck_seconds(), watch.stop)
            except (idle.IdleError, credentials.CredentialsError) as error:
                if isinstance(error, idle.IdleError) and error.kind == Failure.AUTH and watch.held.auth == "oauth2":
                    # A token the provider took back before its expiry: the next connection refreshes it.
                    await self._db(grants.forget_access_token, mailbox_id)
                self._state(watch, folder, Listening.State.RECONNECTING, str(error))
                delay = backoff(attempt)
                attempt += 1
                log.info("Mailbox %s folder %r: %s; connecting again in %.1f s", mailbox_id, folder, error, delay)
                await self._pause(delay, watch.stop)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - this mailbox only; the others go on
                log.exception("Mailbox %s folder %r: the listener failed", mailbox_id, folder)
                self._state(watch, folder, Listening.State.RECONNECTING, f"Internal error: {error}")
                await self._pause(backoff(attempt), watch.stop)
                attempt += 1
            finally:
                if connection is not None:
                    connection.close()

    async def _log_in(self, connection: idle.Connection, held: listening.Held) -> None:
        if held.auth == "oauth2":
            username, token = await self._loop.run_in_executor(self._token_threads, _access_token, held.mailbox_id)
            await connection.login_oauth(username, token)
        else:
            await connection.login(held.username, credentials.password_of(held.password_encrypted))

    def _state(self, watch: _Watch, folder: str, state: str, why: str) -> None:
        """The mailbox's state is the worst of its folders'; written when it changes."""
        watch.states[folder] = (state, why)
        if self.watches.get(watch.held.mailbox_id) is not watch:
            return
        worst = max(watch.states.values(), key=lambda item: _RANK[item[0]])
        mailbox_id = watch.held.mailbox_id
        if self.recorded.get(mailbox_id) != worst:
            self.recorded[mailbox_id] = worst
            self.pending_states[mailbox_id] = (worst[0], timezone.now(), worst[1])

    # --- Syncs -----------------------------------------------------------------

    def _heard(self, mailbox_id: int) -> None:
        self.pending_seen[mailbox_id] = timezone.now()
        self._want_sync(mailbox_id)

    def _want_sync(self, mailbox_id: int) -> None:
        job = self.jobs.get(mailbox_id)
        if job is None or job.done():
            self.jobs[mailbox_id] = asyncio.ensure_future(self._sync_soon(mailbox_id))
        else:
            self.again.add(mailbox_id)

    async def _sync_soon(self, mailbox_id: int) -> None:
        await asyncio.sleep(conf.idle_debounce_seconds())
        while True:
            self.again.discard(mailbox_id)
            for _attempt in range(BUSY_RETRIES):
                result = await self._loop.run_in_executor(self._sync_threads, _sync, mailbox_id)
                if result.error_kind != "busy" or result.error != sync.BUSY:
                    break
                await self._pause(BUSY_RETRY_SECONDS)
            if mailbox_id not in self.again or self._stop.is_set():
                return

    # --- State for admin -------------------------------------------------------

    async def _flush(self) -> None:
        states, self.pending_states = self.pending_states, {}
        seen, self.pending_seen = self.pending_seen, {}
        if states:
            await self._db(listening.record_states, self.name, states)
        if seen:
            await self._db(listening.record_letters_seen, self.name, seen)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(1)
            try:
                await self._flush()
            except Exception:  # noqa: BLE001 - written again with the next change
                log.exception("Listener %s: recording states failed", self.name)


def _sync(mailbox_id: int) -> sync.SyncResult:
    close_old_connections()
    try:
        return sync.sync_mailbox(mailbox_id)
    finally:
        close_old_connections()


def _sent_folder(mailbox_id: int) -> str | None:
    close_old_connections()
    try:
        return listening.sent_folder(mailbox_id)
    finally:
        close_old_connections()


def _access_token(mailbox_id: int) -> tuple[str, str]:
    close_old_connections()
    try:
        return grants.access_token(mailbox_id)
    finally:
        close_old_connections()
