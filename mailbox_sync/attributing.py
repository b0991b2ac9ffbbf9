"""Attributing a sync's stored letters while it stores the next ones.

Attribution costs about as much as storing (a batch of letters costs some
twenty queries and the work between them). Run on its own thread, with its
own database connection, it overlaps the storing of the next batches, and
each side's round trips leave the interpreter to the other. Batches are
attributed one at a time in the order they were committed, so a later letter
still joins the lead of an earlier one; batches that queued up while one was
attributed go together (a batch costs the same few queries whatever its
size). The first batch a sync stores is handed over at once, so that the
thread starts on it while the next ones are fetched and stored (attribution
is the longest of the three stages); after that a few batches' worth at a
time. The letters are handed over as stored, so attribution need not read
them back.

Letters a sync stored but did not attribute (it stopped, failed or was
killed) are attributed by the next sync's `attribute_pending`; attribution
is idempotent, so nothing is attributed twice. Inside a transaction (a test,
or a caller's atomic block) another connection would not see the letters, so
there they are attributed on the caller's thread, as they are stored.
"""

import queue
import threading
import time

from django.db import connection

from . import store

_END = None
# Letters attributed together at most when batches queue up behind a slow one.
MERGED_MOST = 2000


class InlineAttribution:
    """Attributes each batch at once, on the caller's thread."""

    def __init__(self):
        self.seconds = 0.0

    def gather(self) -> int:
        """Stored letters to gather before the next `add()`: a batch costs the
        same few queries whatever its size."""
        return store.ATTRIBUTION_BATCH

    def add(self, letter_ids: list[int]) -> None:
        started = time.perf_counter()
        store.attribute_stored(letter_ids)
        self.seconds += time.perf_counter() - started

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class BackgroundAttribution:
    """Attributes the batches handed to `add()` on a thread of its own.
    `finish()` waits for all of them and raises what the thread raised;
    `abandon()` lets the batch under way end and drops the rest."""

    def __init__(self):
        self.seconds = 0.0
        self._added = False
        self._batches: queue.Queue = queue.Queue()
        self._dropping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mailbox-attribution", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            ended = False
            while not ended:
                letters, ended = self._next()
                if not letters or self._error is not None or self._dropping.is_set():
                    continue
                started = time.perf_counter()
                try:
                    store.attribute_stored(letters, most=max(len(letters), store.ATTRIBUTION_BATCH))
                except BaseException as error:  # noqa: BLE001 - raised by finish() in the sync's thread
                    self._error = error
                self.seconds += time.perf_counter() - started
        finally:
            connection.close()  # this thread's own connection

    def _next(self) -> tuple[list, bool]:
        """The next batch, with the batches queued behind it while the
        last one was attributed (up to MERGED_MOST letters): one batch
        costs the same few queries whatever its size, so attribution
        catches up instead of falling further behind. And whether the end
        was reached."""
        letters = self._batches.get()
        if letters is _END:
            return [], True
        letters = list(letters)
        while len(letters) < MERGED_MOST:
            try:
                more = self._batches.get_nowait()
            except queue.Empty:
                break
            if more is _END:
                return letters, True
            letters.extend(more)
        return letters, False

    def gather(self) -> int:
        """Stored letters to gather before the next `add()`: the first
        batch at once, then a few batches' worth."""
        return store.ATTRIBUTION_BATCH if self._added else 1

    def add(self, letter_ids: list[int]) -> None:
        if self._error is not None:
            raise self._error
        self._added = True
        self._batches.put(list(letter_ids))

    def finish(self) -> None:
        self._batches.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        self._dropping.set()
        self._batches.put(_END)
        self._thread.join()


def start_attribution(*, background: bool):
    """Background attribution when asked for, unless the caller's
    transaction would hide the stored letters from another connection."""
    if not background or connection.in_atomic_block:
        return InlineAttribution()
    return BackgroundAttribution()
