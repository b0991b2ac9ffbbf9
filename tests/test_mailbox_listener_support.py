"""Helpers of the listener tests: a listener run on a thread of its own, a
wait for what the database shows, and a TCP relay in front of Dovecot that
fails the way networks and servers do (drops, BYE, silence, garbage, no IDLE)."""

import asyncio
import socket
import threading
import time
from contextlib import contextmanager

from django.db import close_old_connections

from mailbox_sync.listener import Listener

# Short enough for tests; what the listener waits for is asserted as a state,
# never timed.
FAST = {
    "IDLE_PING_SECONDS": 1.0,
    "IDLE_ANSWER_SECONDS": 1.0,
    "IDLE_BACKOFF_SECONDS": (0.1, 0.5),
    "IDLE_REFRESH_SECONDS": 0.3,
    "IDLE_DEBOUNCE_SECONDS": 0.1,
    "IDLE_LEASE_SECONDS": 3,
    "IMAP_TIMEOUT_SECONDS": 5,
}


def run_coroutine(coroutine):
    """`coroutine` run to its end on an event loop of its own, on a thread of
    its own: the test's thread may already run a loop (Playwright's sync API
    leaves one there), where asyncio.run refuses to start."""
    outcome = {}

    def run():
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 - raised again below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def wait_until(check, seconds: float = 20.0, message: str = "the condition"):
    """Poll `check` (reading the database) until it returns something true."""
    deadline = time.monotonic() + seconds
    while True:
        close_old_connections()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Never came true: {message}")
        time.sleep(0.05)


@contextmanager
def running_listener(name: str | None = None):
    listener = Listener(name)
    failures = []

    def run():
        try:
            asyncio.run(listener.run())
        except BaseException as error:  # noqa: BLE001 - shown by the test
            failures.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert listener.started.wait(10), "the listener did not start"
    try:
        yield listener
    finally:
        listener.request_stop()
        thread.join(30)
        assert not thread.is_alive(), "the listener did not stop"
        assert not failures, failures


class FaultyRelay:
    """Forwards IMAP between the listener and Dovecot; the test can cut
    every connection, make the server go silent, send it lines of its own, or
    hide IDLE from the capabilities, or close every new connection at once."""

    def __init__(self, target_port: int, *, hide_idle: bool = False):
        self.target_port, self.hide_idle = target_port, hide_idle
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.clients: list[socket.socket] = []
        self.sockets: list[socket.socket] = []
        self.silent = threading.Event()
        self.refusing = threading.Event()
        self.closed = threading.Event()
        self.idling = threading.Event()  # the server has answered an IDLE ("+ idling")
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing.is_set():  # the network is down: closed at once
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.accepted += 1
            self.clients.append(client)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source, target, from_server):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.silent.is_set():
                    continue  # swallowed: the server seems to hang
                if from_server and self.hide_idle:
                    data = data.replace(b" IDLE", b"")
                if from_server and b"+ idling" in data:
                    self.idling.set()
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self):
        """Every connection dropped, as by a network failure."""
        sockets, self.sockets, self.clients = self.sockets, [], []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def say(self, line: bytes):
        """A line to every listener connection, as if the server sent it."""
        for client in list(self.clients):
            try:
                client.sendall(line)
            except OSError:
                pass

    def close(self):
        self.closed.set()
        self.listener.close()
        self.cut()
