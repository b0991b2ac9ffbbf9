"""The IMAP side of a sync, through imapclient: read-only EXAMINE, BODY.PEEK
fetches (the server sets no \\Seen flag), folders chosen by their special-use
flags or usual names, and every failure turned into one SyncError whose kind
says what the owner must fix. Messages never carry the password."""

import socket
import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from django.db import models
from imapclient import IMAPClient, imap4, tls
from imapclient.exceptions import CapabilityError, IMAPClientAbortError, IMAPClientError, LoginError

from . import bodystructure, conf, hosts, providers


class Failure(models.TextChoices):
    AUTH = "auth", "Authentication failed"
    UNREACHABLE = "unreachable", "Host unreachable"
    TIMEOUT = "timeout", "Timeout"
    TLS = "tls", "TLS error"
    FOLDER_MISSING = "folder_missing", "Folder missing"
    DROPPED = "dropped", "Connection dropped"
    PROTOCOL = "protocol", "Server error"
    CONFIG = "config", "Configuration error"
    RECONNECT = "reconnect", "Reconnect needed"


class SyncError(Exception):
    def __init__(self, message: str, kind: str = Failure.PROTOCOL):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # keeps its kind when it comes from the fetching process
        return type(self), (str(self), self.kind)


# Folders that hold no enquiries: by RFC 6154 special-use flag (and Gmail's
# XLIST names), else by the names the big providers give them.
SKIPPED_FLAGS = {b"\\sent", b"\\drafts", b"\\trash", b"\\junk", b"\\spam", b"\\all", b"\\allmail"}
SKIPPED_FLAGS |= {b"\\flagged", b"\\important", b"\\starred"}  # Gmail's views of other folders
UNSELECTABLE_FLAGS = {b"\\noselect", b"\\nonexistent"}
SENT_NAMES = {"sent", "sent items", "sent messages", "sent mail", "отправленные"}
SPAM_FOLDER_NAMES = {"spam", "junk", "junk e-mail", "junk email", "bulk mail", "спам", "нежелательная почта"}
SKIPPED_NAMES = SENT_NAMES | SPAM_FOLDER_NAMES | {"outbox", "исходящие"}
SKIPPED_NAMES |= {"drafts", "draft", "черновики", "trash", "deleted", "deleted items", "deleted messages"}
SKIPPED_NAMES |= {"корзина", "удаленные", "удалённые", "all mail", "вся почта", "starred", "important"}


@dataclass(frozen=True)
class Folder:
    name: str
    flags: frozenset
    delimiter: str = "/"

    @property
    def leaf(self) -> str:
        """The last part of the name, lower case: "[Gmail]/Sent Mail" → "sent mail"."""
        name = self.name
        if self.delimiter:
            name = name.rsplit(self.delimiter, 1)[-1]
        return name.strip().lower()

    @property
    def selectable(self) -> bool:
        return not (self.flags & UNSELECTABLE_FLAGS)

    @property
    def is_sent(self) -> bool:
        return b"\\sent" in self.flags or (not self.flags & SKIPPED_FLAGS and self.leaf in SENT_NAMES)

    @property
    def is_spam(self) -> bool:
        return bool(self.flags & {b"\\junk", b"\\spam"}) or self.leaf in SPAM_FOLDER_NAMES

    @property
    def holds_letters(self) -> bool:
        """A folder that "every folder" mode reads."""
        return self.selectable and not (self.flags & SKIPPED_FLAGS) and self.leaf not in SKIPPED_NAMES


def is_spam_folder(name: str) -> bool:
    return bool(name) and Folder(name, frozenset()).is_spam


@dataclass
class FetchedMessage:
    uid: int
    raw: bytes
    internal_date: datetime
    size: int
    truncated: bool = False
    # For a truncated letter: every attachment, from the server's BODYSTRUCTURE.
    attachments: list[dict] | None = None


@dataclass(frozen=True)
class Meta:
    internal_date: datetime
    size: int


@dataclass(frozen=True)
class Bearer:
    """An OAuth2 access token to log in with (SASL XOAUTH2) instead of a password."""

    token: str

    def __repr__(self):  # never in a log or a traceback
        return "Bearer(...)"


def tls_context() -> ssl.SSLContext:
    """Certificates are always verified; a private CA can be added."""
    context = ssl.create_default_context()
    if conf.imap_ca_file():
        context.load_verify_locations(cafile=conf.imap_ca_file())
    return context


class _PinnedIMAP4(imap4.IMAP4WithTimeout):
    def __init__(self, host, port, timeout, addresses):
        self._addresses = addresses  # before imaplib connects, in __init__
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout=None):
        return hosts.connect(self._addresses, self.port, timeout if timeout is not None else self._timeout)


class _PinnedIMAP4TLS(tls.IMAP4_TLS):
    def __init__(self, host, port, ssl_context, timeout, addresses):
        self._addresses = addresses
        super().__init__(host, port, ssl_context, timeout)

    def _create_socket(self, timeout=None):
        sock = hosts.connect(self._addresses, self.port, timeout if timeout is not None else self._timeout)
        try:
            return tls.wrap_socket(sock, self.ssl_context, self.host)  # SNI and the certificate: the host's name
        except BaseException:
            sock.close()
            raise


class PinnedIMAPClient(IMAPClient):
    """An IMAPClient that connects to addresses checked before (`hosts`),
    not to what a second DNS lookup would say; TLS and STARTTLS still use
    the host's name. imapclient has no hook for its socket, so the method
    that makes its imaplib connection is replaced (imapclient 4.x)."""

    def __init__(self, host: str, addresses: hosts.Addresses, **kwargs):
        self._addresses = addresses
        super().__init__(host, **kwargs)

    def _create_IMAP4(self):
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _PinnedIMAP4TLS(self.host, self.port, self.ssl_context, timeout, self._addresses)
        return _PinnedIMAP4(self.host, self.port, timeout, self._addresses)


@contextmanager
def connect(mailbox, password: "str | Bearer"):
    """A logged-in client (with a password, or an OAuth2 access token); the
    SyncError says what went wrong and its kind what to fix."""
    address = f"{mailbox.host}:{mailbox.port}"
    try:
        addresses = hosts.pinned_addresses(mailbox.host, mailbox.port)
    except hosts.HostRefused as error:
        raise SyncError(str(error), Failure.CONFIG) from None
    except socket.gaierror:
        raise SyncError(f"Host {mailbox.host} unreachable: the name does not resolve", Failure.UNREACHABLE) from None
    try:
        use_ssl = mailbox.security == "ssl"
        client = PinnedIMAPClient(
            mailbox.host,
            addresses,
            port=mailbox.port,
            ssl=use_ssl,
            ssl_context=tls_context() if use_ssl else None,
            timeout=conf.imap_timeout(),
        )
    except ssl.SSLCertVerificationError as error:
        raise SyncError(f"TLS error: the certificate of {address} is not trusted ({error.verify_message})", Failure.TLS)
    except ssl.SSLError as error:
        raise SyncError(f"TLS error with {address}: {error.reason or error}", Failure.TLS)
    except TimeoutError:
        raise SyncError(f"Host {address} did not answer in time", Failure.TIMEOUT)
    except socket.gaierror:
        raise SyncError(f"Host {mailbox.host} unreachable: the name does not resolve", Failure.UNREACHABLE)
    except OSError as error:
        raise SyncError(f"Host {address} unreachable: {error.strerror or error}", Failure.UNREACHABLE)
    except IMAPClientError as error:
        raise SyncError(f"Host {address} did not greet as an IMAP server: {error}", Failure.PROTOCOL)
    try:
        client.normalise_times = False  # keep INTERNALDATE's own time zone
        if mailbox.security == "starttls":
            client.starttls(tls_context())
        _login(client, mailbox.username, password)
    except CapabilityError:
        _quietly_close(client)
        raise SyncError(f"TLS error: {address} does not offer STARTTLS", Failure.TLS)
    except LoginError as error:
        _quietly_close(client)
        if isinstance(password, Bearer):
            raise SyncError(f"Authentication failed: the server refused the access token ({error})", Failure.AUTH)
        hint = providers.auth_hint(mailbox.provider)
        raise SyncError(f"Authentication failed: check the username and password{hint}", Failure.AUTH)
    except ssl.SSLCertVerificationError as error:
        _quietly_close(client)
        raise SyncError(f"TLS error: the certificate of {address} is not trusted ({error.verify_message})", Failure.TLS)
    except ssl.SSLError as error:
        _quietly_close(client)
        raise SyncError(f"TLS error with {address}: {error.reason or error}", Failure.TLS)
    except TimeoutError:
        _quietly_close(client)
        raise SyncError(f"Host {address} stopped answering while logging in", Failure.TIMEOUT)
    except (IMAPClientError, OSError) as error:
        _quietly_close(client)
        raise SyncError(f"Connection to {address} failed while logging in: {error}", Failure.DROPPED)
    try:
        yield client
    except TimeoutError:
        _quietly_close(client)
        raise SyncError(f"Host {address} stopped answering (timeout)", Failure.TIMEOUT)
    except (IMAPClientAbortError, OSError) as error:
        _quietly_close(client)
        raise SyncError(f"Connection to {address} dropped: {error}", Failure.DROPPED)
    except IMAPClientError as error:
        _quietly_close(client)
        raise SyncError(f"The server {address} answered with an error: {error}", Failure.PROTOCOL)
    except BaseException:
        _quietly_close(client)
        raise
    else:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            _quietly_close(client)


def _login(client, username: str, password: "str | Bearer") -> None:
    if isinstance(password, Bearer):
        try:
            client.oauth2_login(username, password.token)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as error:  # a refused XOAUTH2 is a failed login, not a broken server
            raise LoginError(_without(str(error), password.token)) from None
        return
    if password.isascii():
        client.login(username, password)
    else:
        # LOGIN cannot carry non-ASCII; AUTHENTICATE PLAIN sends UTF-8.
        client.plain_login(username, password)


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "…") if secret else text


def _quietly_close(client) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001
        pass


def list_folders(client) -> list[Folder]:
    return [
        Folder(name, frozenset(flag.lower() for flag in flags), (delimiter or b"").decode("ascii", "replace"))
        for flags, delimiter, name in client.list_folders()
    ]


def select_readonly(client, folder: str) -> tuple[int, int]:
    """Open the folder read-only (EXAMINE): its UIDVALIDITY and UIDNEXT (0 if
    not told)."""
    try:
        info = client.select_folder(folder, readonly=True)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as error:
        raise SyncError(f"Folder {folder!r} is missing or cannot be opened: {error}", Failure.FOLDER_MISSING)
    return int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT") or 0)


def folder_size(client, folder: str) -> int:
    """Letters in a folder, without selecting it."""
    try:
        return int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])
    except IMAPClientAbortError:
        raise
    except IMAPClientError as error:
        raise SyncError(f"Folder {folder!r} is missing: {error}", Failure.FOLDER_MISSING)


def uids_since(client, since: datetime) -> list[int]:
    # SEARCH SINCE has day granularity in the server's time zone: a day of
    # margin here, the exact INTERNALDATE check on the fetched metadata.
    return sorted(client.search(["SINCE", (since - timedelta(days=1)).date()]))


def uids_above(client, last_uid: int) -> list[int]:
    # "n:*" always includes the highest UID even when it is below n.
    return sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_meta(client, uids: list[int]) -> dict[int, Meta]:
    """Arrival time and size, without the bodies: enough to skip letters
    outside the window and to plan fetches by bytes."""
    response = client.fetch(uids, ["INTERNALDATE", "RFC822.SIZE"])
    return {
        uid: Meta(_aware(data.get(b"INTERNALDATE")), int(data.get(b"RFC822.SIZE") or 0))
        for uid, data in response.items()
        if b"INTERNALDATE" in data or b"RFC822.SIZE" in data
    }


def fetch_letters(client, uids: list[int], metas: dict[int, Meta]) -> list[FetchedMessage]:
    """Whole letters with BODY.PEEK[]; a letter over the size limit only as
    its header and the first bytes of its body, so it is never loaded whole.
    A UID the server no longer has (expunged meanwhile) is left out."""
    limit = conf.letter_max_bytes()
    whole = [uid for uid in uids if metas[uid].size <= limit]
    over = [uid for uid in uids if metas[uid].size > limit]
    fetched = []
    if whole:
        response = client.fetch(whole, ["BODY.PEEK[]"])
        for uid in whole:
            raw = response.get(uid, {}).get(b"BODY[]")
            if raw is not None:
                fetched.append(FetchedMessage(uid, bytes(raw), metas[uid].internal_date, metas[uid].size))
    if over:
        keep = conf.truncated_body_bytes()
        # The start of the body shows only the attachments in it: the
        # BODYSTRUCTURE lists them all, without their content.
        response = client.fetch(over, ["BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{keep}>", "BODYSTRUCTURE"])
        for uid in over:
            data = response.get(uid, {})
            header = data.get(b"BODY[HEADER]")
            if header is not None:
                body = data.get(b"BODY[TEXT]<0>") or b""
                raw = bytes(header) + bytes(body)
                structure = data.get(b"BODYSTRUCTURE")
                listed = bodystructure.attachments(structure) if structure is not None else None
                meta = metas[uid]
                fetched.append(FetchedMessage(uid, raw, meta.internal_date, meta.size, True, listed))
    fetched.sort(key=lambda message: message.uid)
    return fetched


def fetch_headers(client, uids: list[int], metas: dict[int, Meta]) -> list[FetchedMessage]:
    """Only the headers: all a reply in the Sent folder needs."""
    response = client.fetch(uids, ["BODY.PEEK[HEADER]"])
    return [
        FetchedMessage(uid, bytes(response[uid][b"BODY[HEADER]"]), metas[uid].internal_date, metas[uid].size)
        for uid in uids
        if response.get(uid, {}).get(b"BODY[HEADER]") is not None
    ]


def _aware(value) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    # The same offset as a standard time zone: imapclient's own cannot be
    # pickled, and letters cross from the fetching process in pickles.
    return value.replace(tzinfo=timezone(value.utcoffset()))
