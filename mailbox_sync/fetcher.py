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
- Given a `prepare` step (parsing), a second child runs it between the
  fetching child and the parent: reading the responses and parsing the
  letters then overlap too, and the slower of the two, parsing, alone
  bounds how fast letters arrive. It holds no connection, to the server
  or to the database; it passes the fetching child's failures on as they
  came.
"""

import ctypes
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


def _child(unused, writer, parent: int, connect, folder: str, uidvalidity: int, produce) -> None:
    _as_child(unused, parent)
    try:
        with connect() as client:
            renumbered, _uidnext = imap.select_readonly(client, folder)
            if renumbered != uidvalidity:
                raise imap.SyncError(
                    f"Folder {folder!r} was renumbered (UIDVALIDITY changed) during the sync", imap.Failure.PROTOCOL
                )
            for batch in produce(client):
                writer.send(("batch", batch))
        writer.send(("done", None))
    except BrokenPipeError:
        pass  # the parent is gone or stopped reading
    except BaseException as error:  # noqa: BLE001 - handed to the parent
        try:
            writer.send(("error", _portable(error)))
        except OSError:
            pass
    finally:
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
    batch passed through `prepare` in a second child when one is given."""

    def __init__(self, connect, folder: str, uidvalidity: int, produce, prepare=None):
        context = multiprocessing.get_context("fork")
        fetched_reader, fetched_writer = context.Pipe(duplex=False)
        ends = [fetched_reader, fetched_writer]
        self._reader, writer = fetched_reader, fetched_writer
        self._preparer = None
        if prepare is not None:
            self._reader, writer = context.Pipe(duplex=False)
            ends += [self._reader, writer]
        self._process = context.Process(
            target=_child,
            args=(
                [end for end in ends if end is not fetched_writer],
                fetched_writer,
                os.getpid(),
                connect,
                folder,
                uidvalidity,
                produce,
            ),
            name="mailbox-fetch",
            daemon=True,
        )
        if prepare is not None:
            self._preparer = context.Process(
                target=_preparing_child,
                args=(
                    [end for end in ends if end not in (fetched_reader, writer)],
                    fetched_reader,
                    writer,
                    os.getpid(),
                    prepare,
                ),
                name="mailbox-parse",
                daemon=True,
            )
        try:
            self._process.start()
            if self._preparer is not None:
                self._preparer.start()
        except BaseException:
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            for end in ends:
                end.close()
            raise
        # The children's ends: the parent sees EOF when the children are gone.
        for end in ends:
            if end is not self._reader:
                end.close()
        # A thread receives (and unpickles) the next batch while this one is
        # stored, so that the child can already fetch the one after.
        self._received = Prefetch(self._receive)

    def _processes(self) -> list:
        return [process for process in (self._process, self._preparer) if process is not None]

    def _receive(self):
        stall = conf.fetch_process_stall_seconds()
        while True:
            if not self._reader.poll(stall):
                for process in self._processes():
                    process.kill()
                    process.join(timeout=5)
                raise imap.SyncError(f"The fetching process sent nothing for {stall:g} s", imap.Failure.TIMEOUT)
            try:
                kind, value = self._reader.recv()
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
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
