"""The IMAP side of a sync, through imapclient: read-only SELECT, BODY.PEEK
fetches, and errors turned into one SyncError with a clear reason."""

import ssl
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

SPAM_FOLDER_NAMES = {"spam", "junk", "[gmail]/spam", "junk e-mail", "спам", "bulk mail"}


class SyncError(Exception):
    pass


def is_spam_folder(name: str) -> bool:
    return bool(name) and name.strip().lower() in SPAM_FOLDER_NAMES


@dataclass
class FetchedMessage:
    uid: int
    raw: bytes
    internal_date: datetime


@contextmanager
def connect(mailbox, password: str):
    """A logged-in client; the reason in SyncError says what went wrong."""
    context = ssl.create_default_context()
    try:
        client = IMAPClient(
            mailbox.host,
            port=mailbox.port,
            ssl=mailbox.security == "ssl",
            ssl_context=context if mailbox.security == "ssl" else None,
            timeout=settings.IMAP_TIMEOUT_SECONDS,
        )
    except ssl.SSLError as error:
        raise SyncError(f"TLS error: {error}") from error
    except TimeoutError as error:
        raise SyncError(f"Host {mailbox.host}:{mailbox.port} did not answer in time") from error
    except OSError as error:
        raise SyncError(f"Host {mailbox.host}:{mailbox.port} unreachable: {error.strerror or error}") from error
    try:
        client.normalise_times = False  # keep INTERNALDATE's own time zone
        if mailbox.security == "starttls":
            client.starttls(context)
        client.login(mailbox.username, password)
    except LoginError as error:
        _quietly_close(client)
        raise SyncError("Authentication failed: check the username and password") from error
    except ssl.SSLError as error:
        _quietly_close(client)
        raise SyncError(f"TLS error: {error}") from error
    except (IMAPClientError, OSError) as error:
        _quietly_close(client)
        raise SyncError(f"Connection failed: {error}") from error
    try:
        yield client
    except TimeoutError as error:
        raise SyncError("The server stopped answering (timeout)") from error
    except (IMAPClientError, OSError) as error:
        raise SyncError(f"Connection dropped: {error}") from error
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            _quietly_close(client)


def _quietly_close(client) -> None:
    try:
        client.shutdown()
    except Exception:  # noqa: BLE001
        pass


def select_readonly(client, folder: str) -> tuple[int, int]:
    """Open the folder read-only: its UIDVALIDITY and UIDNEXT (0 if not told)."""
    try:
        info = client.select_folder(folder, readonly=True)
    except IMAPClientError as error:
        raise SyncError(f"Folder {folder!r} is missing or cannot be opened: {error}") from error
    return int(info[b"UIDVALIDITY"]), int(info.get(b"UIDNEXT") or 0)


def uids_since(client, since: datetime) -> list[int]:
    # SEARCH SINCE has day granularity; exact INTERNALDATE filtering happens on fetch.
    return sorted(client.search(["SINCE", (since - timedelta(days=1)).date()]))


def uids_above(client, last_uid: int) -> list[int]:
    # "n:*" always includes the highest UID even when it is below n.
    return sorted(uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid)


def batches(items: list[int], size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch(client, uids: list[int]):
    """Bodies with PEEK, so the server sets no \\Seen flag."""
    response = client.fetch(uids, ["BODY.PEEK[]", "INTERNALDATE", "RFC822.SIZE"])
    for uid in sorted(response):
        data = response[uid]
        raw = data.get(b"BODY[]")
        if raw is None:
            continue  # expunged between SEARCH and FETCH
        internal = data.get(b"INTERNALDATE")
        if internal is None:
            internal = datetime.now(UTC)
        elif internal.tzinfo is None:
            internal = internal.replace(tzinfo=UTC)
        yield FetchedMessage(uid=uid, raw=bytes(raw), internal_date=internal)
