"""mailbox_sync's services: what admin, tasks, commands and other apps call.

Storing lives in `store`, the sync loop in `sync`, the Sent folder in
`replies`; they are re-exported here so callers need one import.
"""

from dataclasses import dataclass, field

from lib import crypto

from . import hosts, imap
from .models import Mailbox
from .store import (
    Incoming,
    Seen,
    attribute_pending,
    attribute_stored,
    ingest_letter,
    ingest_raw,
    store_letter,
    store_letters,
)
from .sync import BUSY, SyncResult, claim, due_mailbox_ids, plan_folders, secret_for, sync_mailbox

__all__ = [
    "BUSY",
    "Incoming",
    "Seen",
    "SyncResult",
    "Verdict",
    "attribute_pending",
    "attribute_stored",
    "check_connection",
    "host_refusal",
    "claim",
    "due_mailbox_ids",
    "ingest_letter",
    "ingest_raw",
    "mailbox_password",
    "mailbox_set_password",
    "normalise_host",
    "normalise_username",
    "store_letter",
    "store_letters",
    "sync_mailbox",
]


def mailbox_set_password(mailbox: Mailbox, password: str) -> None:
    """The password is kept only encrypted (Fernet, ENCRYPTION_KEY)."""
    mailbox.password_encrypted = crypto.encrypt(password)


def mailbox_password(mailbox: Mailbox) -> str:
    return crypto.decrypt(mailbox.password_encrypted) if mailbox.password_encrypted else ""


def normalise_username(username: str) -> str:
    return username.strip().lower()


def normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def host_refusal(host: str, port: int) -> str:
    """Why a mailbox may not use this server ("" if it may, or if the name
    does not resolve now: that is the connection's to report). Every
    connection checks again; this tells the account manager on saving."""
    try:
        hosts.pinned_addresses(host, port)
    except hosts.HostRefused as error:
        return str(error)
    except OSError:
        return ""
    return ""


@dataclass
class Verdict:
    """The answer of "test connection": ok, or what failed (a Failure)."""

    ok: bool
    kind: str = ""
    message: str = ""
    folders: dict[str, int] = field(default_factory=dict)


def check_connection(mailbox: Mailbox, password: str | None = None) -> Verdict:
    """Log in, find the folders the sync would read and count their letters,
    read-only. The verdict says which of authentication, reachability, TLS
    or a missing folder is wrong; never the password."""
    try:
        password = secret_for(mailbox) if password is None else password
    except imap.SyncError as error:
        return Verdict(False, error.kind, str(error))
    problems: list[str] = []
    try:
        with imap.connect(mailbox, password) as client:
            letter_folders, sent = plan_folders(client, mailbox, problems)
            folders = {}
            for folder in letter_folders + ([sent] if sent else []):
                try:
                    folders[folder.name] = imap.folder_size(client, folder.name)
                except imap.SyncError as error:
                    problems.append(str(error))
    except imap.SyncError as error:
        return Verdict(False, error.kind, str(error))
    if problems:
        return Verdict(False, imap.Failure.FOLDER_MISSING, "; ".join(problems), folders)
    summary = ", ".join(f"{name} ({count} letters)" for name, count in folders.items())
    return Verdict(True, "", f"Connected: {summary}", folders)
