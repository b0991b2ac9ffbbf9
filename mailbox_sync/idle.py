"""IMAP IDLE (RFC 2177) on asyncio streams: the few commands a listener
needs (CAPABILITY, LOGIN / AUTHENTICATE, EXAMINE, IDLE, DONE, LOGOUT), so
that one process holds a thousand connections without a thread each.

Reading letters stays with the sync (imapclient, `sync`); this only hears
that a folder changed. Every failure is an IdleError whose kind (a
`imap.Failure`) says what went wrong, with the server's own words; the
password and tokens never appear in it.
"""

import asyncio
import base64
import math
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from imapclient.imap_utf7 import encode as utf7_encode

from . import hosts
from .imap import Failure, tls_context

# A server may send at most this much in one response line (a sane greeting
# or CAPABILITY is far shorter): more is garbage.
MAX_LINE = 64 * 1024
# An IDLE's turns (DONE, IDLE again) fall on a grid of this many seconds (at
# most an eighth of the ping), shared by every connection of the process.
TURN_GRID = 2.0
_TAGGED = re.compile(rb"^(?P<tag>[A-Za-z0-9]+) (?P<status>OK|NO|BAD)\b ?(?P<text>.*)$", re.IGNORECASE)
_NUMBERED = re.compile(rb"^\* (?P<number>\d+) (?P<name>[A-Za-z]+)\b", re.IGNORECASE)
_CODE = re.compile(rb"\[(?P<name>[A-Z-]+) (?P<value>\d+)\]", re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class IdleError(Exception):
    def __init__(self, message: str, kind: str = Failure.PROTOCOL):
        super().__init__(message)
        self.kind = kind


@dataclass
class Examined:
    uidvalidity: int
    uidnext: int  # 0 when the server did not say


@dataclass
class Timing:
    """How long to wait for the server. `ping` also bounds how long an IDLE
    lasts (RFC 2177 asks to renew it before 29 minutes): the listener sends
    DONE that often, and a server that does not answer within `answer` is
    taken for dead."""

    connect: float = 15.0
    answer: float = 10.0
    ping: float = 45.0


def turn_at(now: float, ping: float) -> float:
    """When an IDLE begun at `now` is next ended with DONE: the last point of
    the grid at most `ping` seconds on. So the turns of a thousand
    connections come in batches (a dozen wakeups of the process every grid
    step instead of one or more per connection), and never later than
    `ping`: a dead connection is still found within ping and answer."""
    grid = min(TURN_GRID, ping / 8)
    return math.floor((now + ping) / grid) * grid


class Connection:
    """One logged-in IMAP connection. Use `open()`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str, timing: Timing):
        self.reader, self.writer, self.address, self.timing = reader, writer, address, timing
        self.capabilities: set[bytes] = set()
        self._tag = 0

    # --- Lines ---------------------------------------------------------------

    async def _line(self, timeout: float) -> bytes:
        """One response line without its CRLF, within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self._read_line()
        except TimeoutError:
            raise IdleError(f"{self.address} did not answer within {timeout:g} s", Failure.TIMEOUT) from None

    async def _read_line(self) -> bytes:
        """One response line without its CRLF; a literal is read into it. No
        time limit of its own: the caller's `asyncio.timeout` bounds it (a
        timeout, one task-free timer, rather than `wait_for`'s task per read)."""
        try:
            line = await self.reader.readuntil(b"\r\n")
            while (literal := _LITERAL.search(line.rstrip(b"\r\n"))) is not None:
                size = int(literal.group(1))
                if size > MAX_LINE:
                    raise IdleError(f"{self.address} sent a {size}-byte literal", Failure.PROTOCOL)
                data = await self.reader.readexactly(size)
                rest = await self.reader.readuntil(b"\r\n")
                line = line.rstrip(b"\r\n") + data + rest
        except asyncio.LimitOverrunError:
            raise IdleError(f"{self.address} sent a line over {MAX_LINE} bytes", Failure.PROTOCOL) from None
        except asyncio.IncompleteReadError:
            raise IdleError(f"{self.address} closed the connection", Failure.DROPPED) from None
        except OSError as error:
            raise IdleError(f"Connection to {self.address} dropped: {error}", Failure.DROPPED) from None
        line = line.rstrip(b"\r\n")
        if line.upper().startswith(b"* BYE"):
            said = line[5:].strip().decode("utf-8", "replace")
            raise IdleError(f"{self.address} closed the connection (BYE {said})".strip(), Failure.DROPPED)
        if not (line.startswith((b"* ", b"+")) or _TAGGED.match(line)):
            shown = line[:80].decode("utf-8", "replace")
            raise IdleError(f"{self.address} sent something that is not IMAP: {shown!r}", Failure.PROTOCOL)
        return line

    async def _send(self, data: bytes) -> None:
        self._write(data)
        if self.writer.transport.get_write_buffer_size():  # the kernel did not take it all at once
            try:
                async with asyncio.timeout(self.timing.answer):
                    await self.writer.drain()
            except TimeoutError:
                raise IdleError(f"{self.address} stopped reading", Failure.TIMEOUT) from None
            except OSError as error:
                raise IdleError(f"Connection to {self.address} dropped: {error}", Failure.DROPPED) from None

    def _write(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            raise IdleError(f"{self.address} closed the connection", Failure.DROPPED)
        try:
            self.writer.write(data)
        except OSError as error:
            raise IdleError(f"Connection to {self.address} dropped: {error}", Failure.DROPPED) from None

    def _next_tag(self) -> bytes:
        self._tag += 1
        return b"L%d" % self._tag

    async def command(self, text: bytes, *, answer: Callable[[bytes], bytes] | None = None) -> list[bytes]:
        """Send a command; its untagged lines once tagged OK. `answer` gives
        the reply to a continuation request ("+ ...")."""
        tag = self._next_tag()
        await self._send(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            line = await self._line(self.timing.answer)
            tagged = _TAGGED.match(line)
            if tagged and tagged.group("tag") == tag:
                if tagged.group("status").upper() != b"OK":
                    raise _refusal(self.address, text, tagged.group("status"), tagged.group("text"))
                self._note_capabilities(line)
                return untagged
            if line.startswith(b"+"):
                if answer is None:
                    raise IdleError(f"{self.address} asked for more than the command gives", Failure.PROTOCOL)
                await self._send(answer(line[1:].strip()) + b"\r\n")
                continue
            self._note_capabilities(line)
            untagged.append(line)

    def _note_capabilities(self, line: bytes) -> None:
        upper = line.upper()
        if upper.startswith(b"* CAPABILITY "):
            self.capabilities = set(upper[len(b"* CAPABILITY ") :].split())
        elif b"[CAPABILITY " in upper:
            inside = upper.split(b"[CAPABILITY ", 1)[1].split(b"]", 1)[0]
            self.capabilities = set(inside.split())

    # --- Commands ------------------------------------------------------------

    async def login(self, username: str, password: str) -> None:
        if password.isascii() and username.isascii() and b"LOGINDISABLED" not in self.capabilities:
            await self.command(b"LOGIN " + _quoted(username) + b" " + _quoted(password))
        else:
            # LOGIN cannot carry non-ASCII; AUTHENTICATE PLAIN sends UTF-8.
            token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode())
            await self.command(b"AUTHENTICATE PLAIN", answer=lambda _challenge: token)
        await self._capabilities_after_login()

    async def login_oauth(self, username: str, access_token: str) -> None:
        """SASL XOAUTH2. A refusal comes as a challenge (the provider's JSON),
        answered with an empty line before the tagged NO."""
        initial = base64.b64encode(f"user={username}\x01auth=Bearer {access_token}\x01\x01".encode())
        challenges: list[bytes] = []

        def answer(challenge: bytes) -> bytes:
            challenges.append(challenge)
            return initial if len(challenges) == 1 else b""

        try:
            await self.command(b"AUTHENTICATE XOAUTH2", answer=answer)
        except IdleError as error:
            if len(challenges) > 1:  # the provider's reason, e.g. {"status":"401",...}
                try:
                    reason = base64.b64decode(challenges[1]).decode("utf-8", "replace")
                except ValueError:
                    reason = ""
                if reason:
                    error.args = (f"{error} {reason}",)
            raise
        await self._capabilities_after_login()

    async def _capabilities_after_login(self) -> None:
        if b"IDLE" not in self.capabilities:
            await self.command(b"CAPABILITY")

    @property
    def can_idle(self) -> bool:
        return b"IDLE" in self.capabilities

    async def examine(self, folder: str) -> Examined:
        """Open the folder read-only."""
        try:
            lines = await self.command(b"EXAMINE " + _quoted(_utf7(folder)))
        except IdleError as error:
            if error.kind == Failure.PROTOCOL:
                error.kind = Failure.FOLDER_MISSING
            raise
        codes = {}
        for line in lines:
            for code in _CODE.finditer(line):
                codes[code.group("name").upper()] = int(code.group("value"))
        if b"UIDVALIDITY" not in codes:
            raise IdleError(f"{self.address} gave no UIDVALIDITY for {folder!r}", Failure.PROTOCOL)
        return Examined(codes[b"UIDVALIDITY"], codes.get(b"UIDNEXT", 0))

    async def idle(self, *, on_new: Callable[[], None], on_renumbered: Callable[[], None], stop: asyncio.Event):
        """IDLE until `stop` is set or the connection fails (IdleError).
        `on_new` on every EXISTS; `on_renumbered` when the server announces
        another UIDVALIDITY. Every `timing.ping` seconds (at most) the IDLE is ended
        with DONE and begun again: the server's answer (DONE's and the next
        IDLE's, within `timing.answer`) proves the connection alive, and no
        IDLE outlives the 29 minutes of RFC 2177.

        A thousand connections make some twenty turns a second between
        them, so a turn is lean: one timer while idling (no task per read),
        the time for DONE and the next IDLE bounded by one timeout, a `stop`
        heard through one callback for the whole of the IDLE; and the turns
        fall on a grid shared by every connection (`turn_at`), so the
        process wakes for a batch of them rather than for each."""
        loop = asyncio.get_running_loop()
        quiet: asyncio.Timeout | None = None  # the wait for news, while idling

        def stopped(_waited=None) -> None:
            if quiet is not None and not quiet.expired():
                quiet.reschedule(loop.time())  # end the wait now: DONE, then out

        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(stopped)
        try:
            tag = self._next_tag()
            try:
                async with asyncio.timeout(self.timing.answer):
                    await self._begin_idle(tag, on_new, on_renumbered)
            except TimeoutError:
                raise self._no_answer() from None
            while True:
                if not stop.is_set():
                    try:
                        async with asyncio.timeout_at(turn_at(loop.time(), self.timing.ping)) as quiet:
                            while True:
                                self._hear(await self._read_line(), None, on_new, on_renumbered)
                    except TimeoutError:
                        # Time for DONE. A cancelled read consumes nothing, so
                        # the next read starts at the same place.
                        pass
                    finally:
                        quiet = None
                try:
                    async with asyncio.timeout(self.timing.answer):
                        await self._send(b"DONE\r\n")
                        while not self._hear(await self._read_line(), tag, on_new, on_renumbered):
                            pass
                        if stop.is_set():
                            return
                        tag = self._next_tag()
                        await self._begin_idle(tag, on_new, on_renumbered)
                except TimeoutError:
                    raise self._no_answer() from None
        finally:
            stopping.remove_done_callback(stopped)
            stopping.cancel()

    def _no_answer(self) -> IdleError:
        return IdleError(f"{self.address} did not answer within {self.timing.answer:g} s", Failure.TIMEOUT)

    async def _begin_idle(self, tag: bytes, on_new, on_renumbered) -> None:
        await self._send(tag + b" IDLE\r\n")
        while not (line := await self._read_line()).startswith(b"+"):  # until the continuation "+ idling"
            self._hear(line, tag, on_new, on_renumbered)

    def _hear(self, line: bytes, tag: bytes | None, on_new, on_renumbered) -> bool:
        """React to one line; True when it is `tag`'s tagged answer."""
        tagged = _TAGGED.match(line)
        if tagged:
            if tag is None or tagged.group("tag") != tag:
                raise IdleError(f"{self.address} answered a command not sent", Failure.PROTOCOL)
            if tagged.group("status").upper() != b"OK":
                raise _refusal(self.address, b"IDLE", tagged.group("status"), tagged.group("text"))
            return True
        numbered = _NUMBERED.match(line)
        if numbered and numbered.group("name").upper() == b"EXISTS":
            on_new()
        elif b"[UIDVALIDITY " in line.upper():
            on_renumbered()
        return False

    async def logout(self) -> None:
        try:
            await asyncio.wait_for(self.command(b"LOGOUT"), self.timing.answer)
        except (IdleError, TimeoutError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing a broken transport
            pass


async def open_connection(host: str, port: int, security: str, timing: Timing) -> Connection:
    """Connect and read the greeting (TLS for "ssl", STARTTLS for "starttls"),
    to an address the host was checked to resolve to (`hosts`: pinned, the
    name still used by TLS)."""
    address = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        addresses = await asyncio.wait_for(
            loop.run_in_executor(None, hosts.pinned_addresses, host, port), timing.connect
        )
    except hosts.HostRefused as error:
        raise IdleError(str(error), Failure.CONFIG) from None
    except TimeoutError:
        raise IdleError(f"Host {host} unreachable: its name did not resolve in time", Failure.UNREACHABLE) from None
    except OSError:
        raise IdleError(f"Host {host} unreachable: the name does not resolve", Failure.UNREACHABLE) from None
    try:
        reader, writer = await asyncio.wait_for(_open_pinned(addresses, host, port, security), timing.connect)
    except TimeoutError:
        raise IdleError(f"Host {address} did not answer in time", Failure.TIMEOUT) from None
    except ssl.SSLError as error:
        raise IdleError(f"TLS error with {address}: {error.reason or error}", Failure.TLS) from None
    except OSError as error:
        raise IdleError(f"Host {address} unreachable: {error.strerror or error}", Failure.UNREACHABLE) from None
    connection = Connection(reader, writer, address, timing)
    try:
        greeting = await connection._line(timing.connect)
        if not greeting.upper().startswith((b"* OK", b"* PREAUTH")):
            raise IdleError(f"{address} did not greet as an IMAP server", Failure.PROTOCOL)
        connection._note_capabilities(greeting)
        if security == "starttls":
            await connection.command(b"STARTTLS")
            try:
                await asyncio.wait_for(writer.start_tls(tls_context(), server_hostname=host), timing.connect)
            except (ssl.SSLError, OSError, TimeoutError) as error:
                raise IdleError(f"TLS error with {address}: {error}", Failure.TLS) from None
            connection.capabilities = set()
        if not connection.capabilities:
            await connection.command(b"CAPABILITY")
    except BaseException:
        connection.close()
        raise
    return connection


async def _open_pinned(addresses, host: str, port: int, security: str):
    """Streams to the first checked address that answers."""
    error: OSError | None = None
    for _family, ip in addresses:
        try:
            return await asyncio.open_connection(
                ip,
                port,
                ssl=tls_context() if security == "ssl" else None,
                server_hostname=host if security == "ssl" else None,
                limit=MAX_LINE,
            )
        except ssl.SSLError:
            raise
        except OSError as exc:
            error = exc
    raise error if error is not None else OSError("no address to connect to")


def _refusal(address: str, command: bytes, status: bytes, text: bytes) -> IdleError:
    verb = command.split(b" ", 1)[0].decode("ascii", "replace").upper()
    said = text.decode("utf-8", "replace").strip()
    if verb in {"LOGIN", "AUTHENTICATE"}:
        return IdleError(f"Authentication failed: {said}", Failure.AUTH)
    return IdleError(f"{address} refused {verb}: {status.decode()} {said}".strip(), Failure.PROTOCOL)


def _quoted(text: str) -> bytes:
    data = text.encode("utf-8")
    if b"\r" in data or b"\n" in data:
        raise IdleError("A line break cannot be sent in a quoted string", Failure.CONFIG)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _utf7(folder: str) -> str:
    """Folder names in modified UTF-7 (RFC 3501), as imapclient sends them."""
    return utf7_encode(folder).decode("ascii")
