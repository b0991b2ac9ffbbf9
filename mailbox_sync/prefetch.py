"""Fetching and parsing one batch ahead of storing.

A thread of its own runs the IMAP fetches and parses the letters while the
caller's thread stores the previous batch and attributes it: the network,
the parser's CPU and the database's round trips overlap instead of taking
turns. Only the caller's thread touches the database (so a sync also works
inside a transaction), and at most one batch waits in between, so memory
stays bounded by a few batches.
"""

import queue
import threading

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetch:
    """Iterates over what `produce()` yields, produced in another thread. An
    exception raised there is raised here, after everything produced before
    it. `close()` stops the producer and waits for it, so that the caller may
    use the IMAP connection again."""

    def __init__(self, produce):
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name="mailbox-prefetch", daemon=True)
        self._thread.start()

    def _run(self, produce) -> None:
        try:
            for item in produce():
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            self._put(_Failed(error))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
