"""Fetching and parsing a large folder in a process of its own.

A first sync's Python work is three parts of about equal weight: reading the
IMAP responses, parsing the letters, and storing and attributing them. In
one process they take turns on one core: threads share the interpreter lock,
and the thread that waits for PostgreSQL waits again for the lock after each
round trip while the parsing thread holds it. So, for a folder with many
letters to read, a forked child process opens its own IMAP connection, opens
the folder read-only and fetches (with PEEK) and parses its letters, handing
each batch over a pipe; the sync's process only stores and attributes them,
on the other core.

- The child never touches the database (nor Redis): only the parent commits,
  so a crash anywhere re-reads, never skips.
- The child dies with its parent (PR_SET_PDEATHSIG, and a write to a pipe
  nobody reads fails), and the parent kills it when it stops early.
- At most one batch waits in the pipe, so memory stays bounded as with the
  prefetch thread.
- A failure in the child (its connection dropped, its login refused, the
  folder renumbered meanwhile) is raised in the parent as a SyncError, after
  the batches handed over before it; a child that died without a word is a
  dropped connection, never a hang.
- Given a `prepare` step (parsing), other children run it between the
  fetching child and the parent (SYNC_PARSE_PROCESSES of them, two by
  default, taking the batches in turn; the parent reads them back in the
  same turn, so the order stays): reading the responses and parsing the
  letters then overlap, and parsing, three times the work of fetching, is
  shared. They hold no connection, to the server or to the database; they
  pass the fetching child's failures on as they came.
"""

import ctypes
import gc
import multiprocessing
import os
import signal

from . import conf, imap
from .prefetch import Prefetch

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):  # not Linux: a write to the closed pipe ends the child instead
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _portable(error: BaseException) -> BaseException:
    """An exception that survives the pipe with its meaning."""
    if isinstance(error, imap.SyncError):
        return error
    return imap.SyncError(f"Fetching failed: {type(error).__name__}: {error}", imap.Failure.PROTOCOL)


def _as_child(unused: list, parent: int) -> None:
    for end in unused:  # so that each reader sees EOF when its writer is gone
        end.close()
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a worker's handlers are not the child's
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle


def _child(unused, writers: list, parent: int, connect, folder: str, uidvalidity: int, produce) -> None:
    """Fetches; batch n goes to writers[n % len(writers)], and so does what
    comes after the last one (the end or a failure)."""
    _as_child(unused, parent)
    sent = 0
    try:
        with connect() as client:
            renumbered, _uidnext = imap.select_readonly(client, folder)
            if renumbered != uidvalidity:
                raise imap.SyncError(
                    f"Folder {folder!r} was renumbered (UIDVALIDITY changed) during the sync", imap.Failure.PROTOCOL
                )
            for batch in produce(client):
                writers[sent % len(writers)].send(("batch", batch))
                sent += 1
        writers[sent % len(writers)].send(("done", None))
    except BrokenPipeError:
        pass  # the parent is gone or stopped reading
    except BaseException as error:  # noqa: BLE001 - handed to the parent
        try:
            writers[sent % len(writers)].send(("error", _portable(error)))
        except OSError:
            pass
    finally:
        for writer in writers:
            writer.close()
        os._exit(0)  # no atexit handlers: they belong to the parent (its database connections among them)


def _preparing_child(unused, upstream, writer, parent: int, prepare) -> None:
    """Applies `prepare` to each batch of the fetching child and passes it
    on; the end, a failure or the fetching child's death as they came."""
    _as_child(unused, parent)
    try:
        while True:
            try:
                kind, value = upstream.recv()
            except EOFError:
                writer.send(("ended", None))  # the parent knows its exit code
                break
            if kind == "batch":
                value = prepare(value)
            writer.send((kind, value))
            if kind != "batch":
                break
    except BrokenPipeError:
        pass  # the parent is gone or stopped reading
    except BaseException as error:  # noqa: BLE001 - handed to the parent
        try:
            writer.send(("error", _portable(error)))
        except OSError:
            pass
    finally:
        writer.close()
        os._exit(0)


class ChildFetch:
    """Iterates over what `produce(client)` yields, produced in a child
    process on a connection of its own made by `connect()` (a context
    manager), with `folder` open read-only and its UIDVALIDITY checked; each
    batch passed through `prepare` in another child when one is given
    (`preparers` of them, taking the batches in turn, read back in order)."""

    def __init__(self, connect, folder: str, uidvalidity: int, produce, prepare=None, preparers: int = 1):
        context = multiprocessing.get_context("fork")
        lanes = [context.Pipe(duplex=False) for _ in range(max(1, preparers) if prepare is not None else 1)]
        ends = [end for lane in lanes for end in lane]
        fetched_writers = [writer for _reader, writer in lanes]
        self._readers = [reader for reader, _writer in lanes]
        self._preparers = []
        if prepare is not None:
            outputs = [context.Pipe(duplex=False) for _ in lanes]
            ends += [end for output in outputs for end in output]
            self._readers = [reader for reader, _writer in outputs]
            for (fetched, _), (_, writer) in zip(lanes, outputs, strict=True):
                self._preparers.append(
                    context.Process(
                        target=_preparing_child,
                        args=(
                            [end for end in ends if end not in (fetched, writer)],
                            fetched,
                            writer,
                            os.getpid(),
                            prepare,
                        ),
                        name="mailbox-parse",
                        daemon=True,
                    )
                )
        self._process = context.Process(
            target=_child,
            args=(
                [end for end in ends if end not in fetched_writers],
                fetched_writers,
                os.getpid(),
                connect,
                folder,
                uidvalidity,
                produce,
            ),
            name="mailbox-fetch",
            daemon=True,
        )
        # The parent's objects are moved out of the collector's sight while
        # the children fork: a child's collections then never walk them, and
        # so never copy the pages they sit on (copy-on-write) only to write
        # their collection marks; the parent gets them back at once (unless
        # the process froze its objects itself: those stay frozen).
        thawing = gc.get_freeze_count() == 0
        if thawing:
            gc.freeze()
        try:
            self._process.start()
            for preparer in self._preparers:
                preparer.start()
        except BaseException:
            for process in self._processes():
                if process.is_alive():
                    process.kill()
                    process.join()
            for end in ends:
                end.close()
            raise
        finally:
            if thawing:
                gc.unfreeze()
        # The children's ends: the parent sees EOF when the children are gone.
        for end in ends:
            if end not in self._readers:
                end.close()
        # A thread receives (and unpickles) the next batch while this one is
        # stored, so that the children can already work on the ones after.
        self._received = Prefetch(self._receive)

    def _processes(self) -> list:
        return [self._process, *self._preparers]

    def _receive(self):
        stall = conf.fetch_process_stall_seconds()
        received = 0
        while True:
            reader = self._readers[received % len(self._readers)]
            received += 1
            if not reader.poll(stall):
                for process in self._processes():
                    process.kill()
                    process.join(timeout=5)
                raise imap.SyncError(f"The fetching process sent nothing for {stall:g} s", imap.Failure.TIMEOUT)
            try:
                kind, value = reader.recv()
            except EOFError:
                kind = "ended"
            if kind == "ended":
                self._process.join(timeout=5)
                message = f"The fetching process ended unexpectedly (exit code {self._process.exitcode})"
                raise imap.SyncError(message, imap.Failure.DROPPED)
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value

    def __iter__(self):
        return iter(self._received)

    def close(self) -> None:
        for process in self._processes():
            if process.is_alive():
                process.kill()  # the receiving thread then sees the pipe's end
        self._received.close()
        for process in self._processes():
            process.join()
        for reader in self._readers:
            reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
