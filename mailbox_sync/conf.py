"""The sync's settings, read when used so that tests and deployments can
change them: `getattr(settings, NAME, default)`."""

from datetime import timedelta

from django.conf import settings

MB = 1024 * 1024


def first_sync_window() -> timedelta:
    """How far back the first sync of a mailbox reads (by INTERNALDATE)."""
    return getattr(settings, "FIRST_SYNC_WINDOW", timedelta(hours=24))


def imap_timeout() -> float:
    return getattr(settings, "IMAP_TIMEOUT_SECONDS", 30)


def imap_ca_file() -> str | None:
    """Extra CA certificates (PEM) to trust, for servers with a private CA."""
    return getattr(settings, "IMAP_CA_FILE", None) or None


def imap_allowed_private_hosts() -> list[str]:
    """Mailbox servers (as the mailboxes name them) that may be on a private
    or loopback network: the installation's own mail server. Empty: none."""
    return list(getattr(settings, "IMAP_ALLOWED_PRIVATE_HOSTS", None) or [])


def fetch_batch() -> int:
    """Letters fetched, stored and committed together."""
    return max(1, getattr(settings, "IMAP_FETCH_BATCH", 200))


def fetch_process_min_letters() -> int:
    """A folder with at least this many letters to read is fetched and parsed
    in a process of its own (fetcher.py); fewer are not worth its connection."""
    return getattr(settings, "SYNC_FETCH_PROCESS_MIN_LETTERS", 200)


def parse_processes() -> int:
    """Processes parsing a large folder's letters, beside the one fetching
    them: the batches go to each in turn and come back in order. Parsing
    costs about three times what fetching does."""
    return max(1, getattr(settings, "SYNC_PARSE_PROCESSES", 2))


def fetch_process_stall_seconds() -> float:
    """How long the fetching process may send nothing before it is taken for
    stuck (each IMAP read has its own timeout; this also covers a child that
    hangs without reading, e.g. on a lock inherited from the fork)."""
    return getattr(settings, "SYNC_FETCH_PROCESS_STALL_SECONDS", max(120.0, 4 * imap_timeout()))


def fetch_batch_bytes() -> int:
    """Bytes of letters fetched at once, so that memory stays bounded."""
    return getattr(settings, "IMAP_FETCH_BATCH_BYTES", 16 * MB)


def letter_max_bytes() -> int:
    """Letters above this size keep only their headers and the start of the body."""
    return getattr(settings, "LETTER_MAX_BYTES", 25 * MB)


def truncated_body_bytes() -> int:
    """How much of an oversized letter's body is fetched and kept."""
    return getattr(settings, "LETTER_TRUNCATED_BODY_BYTES", 256 * 1024)


def claim_duration() -> timedelta:
    """How long a sync's claim holds without renewal; every batch renews it."""
    return timedelta(seconds=getattr(settings, "SYNC_CLAIM_SECONDS", 15 * 60))


def max_backoff() -> timedelta:
    return getattr(settings, "SYNC_MAX_BACKOFF", timedelta(hours=1))


# --- The listener (IMAP IDLE, `listen_mailboxes`) -------------------------------


def listener_lease() -> timedelta:
    """How long a listener's hold on a mailbox lasts without renewal; a
    listener that died leaves its mailboxes to the others after this."""
    return timedelta(seconds=getattr(settings, "IDLE_LEASE_SECONDS", 60))


def listener_refresh_seconds() -> float:
    """How often a listener renews its leases and reads the mailboxes again
    (mailboxes added, changed or switched off in admin are heard within it)."""
    return getattr(settings, "IDLE_REFRESH_SECONDS", 20)


def listener_capacity() -> int:
    """The most mailboxes one listener process holds."""
    return getattr(settings, "IDLE_MAX_MAILBOXES", 2000)


def idle_ping_seconds() -> float:
    """IDLE is ended with DONE and begun again this often: an answer proves
    the connection alive (a dead one is found within this plus the answer
    time), and no IDLE outlives RFC 2177's 29 minutes."""
    return getattr(settings, "IDLE_PING_SECONDS", 45)


def idle_answer_seconds() -> float:
    return getattr(settings, "IDLE_ANSWER_SECONDS", 10)


def idle_debounce_seconds() -> float:
    """After a new letter is announced, wait this long for more before the
    sync starts: a burst of letters is one sync."""
    return getattr(settings, "IDLE_DEBOUNCE_SECONDS", 0.3)


def idle_backoff_seconds() -> tuple[float, float]:
    """Reconnecting waits the first, doubling up to the second (with jitter)."""
    return getattr(settings, "IDLE_BACKOFF_SECONDS", (1.0, 300.0))


def idle_recheck_seconds() -> float:
    """A server without IDLE is asked again after this (meanwhile: the poll)."""
    return getattr(settings, "IDLE_RECHECK_SECONDS", 3600)


def idle_sync_threads() -> int:
    """Syncs a listener runs at once when letters arrive."""
    return max(1, getattr(settings, "IDLE_SYNC_THREADS", 4))


def idle_connects_at_once() -> int:
    """Connections a listener opens at once (at start, a thousand would
    otherwise knock together)."""
    return max(1, getattr(settings, "IDLE_CONNECTS_AT_ONCE", 50))
