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


def _child(reader, writer, parent: int, connect, folder: str, uidvalidity: int, produce) -> None:
    reader.close()
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a worker's handlers are not the child's
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
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


class ChildFetch:
    """Iterates over what `produce(client)` yields, produced in a child
    process on a connection of its own made by `connect()` (a context
    manager), with `folder` open read-only and its UIDVALIDITY checked."""

    def __init__(self, connect, folder: str, uidvalidity: int, produce):
        context = multiprocessing.get_context("fork")
        self._reader, writer = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(self._reader, writer, os.getpid(), connect, folder, uidvalidity, produce),
            name="mailbox-fetch",
            daemon=True,
        )
        try:
            self._process.start()
        except BaseException:
            self._reader.close()
            writer.close()
            raise
        writer.close()  # the child's end: the parent sees EOF when the child is gone
        # A thread receives (and unpickles) the next batch while this one is
        # stored, so that the child can already fetch the one after.
        self._received = Prefetch(self._receive)

    def _receive(self):
        stall = conf.fetch_process_stall_seconds()
        while True:
            if not self._reader.poll(stall):
                self._process.kill()
                self._process.join(timeout=5)
                raise imap.SyncError(f"The fetching process sent nothing for {stall:g} s", imap.Failure.TIMEOUT)
            try:
                kind, value = self._reader.recv()
            except EOFError:
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
        if self._process.is_alive():
            self._process.kill()  # the receiving thread then sees the pipe's end
        self._received.close()
        self._process.join()
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
