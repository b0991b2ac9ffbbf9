"""Which stored letter a letter answers, by its In-Reply-To / References.

A Message-ID names one letter only while one letter carries it. When several
letters with different content carry it (reused: see `identity`), the ID
alone proves nothing, and a reply must not join an unrelated lead because of
it: such a letter counts only when it is in the same conversation as the
reply (the same correspondents: one's sender is the other's sender or among
its recipients). Among the letters that count, the latest is the parent.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

# The letter fields a candidate is read from, in Candidate's order.
FIELDS = ("id", "received_at", "lead_id", "sender_email", "recipients", "message_id_reused")


def thread_ids(in_reply_to: str, references: list[str]) -> list[str]:
    return [i for i in [in_reply_to, *(references or [])] if i]


def addresses(recipients: dict | list | None) -> frozenset[str]:
    """Every address of a letter's recipients (delivered to, To, Cc), or of a list."""
    if not recipients:
        return frozenset()
    if isinstance(recipients, dict):
        recipients = [email for emails in recipients.values() for email in emails]
    return frozenset(email.lower() for email in recipients if email)


@dataclass(frozen=True, eq=False)
class Candidate:
    """A stored letter a reply may answer."""

    letter_id: int
    received_at: datetime
    lead: object  # the letter's lead: its id, or a lead made in the same batch
    sender: str
    stored_recipients: dict | list | None  # as the letter stores them
    reused: bool

    @cached_property
    def recipients(self) -> frozenset[str]:
        # Only a reused Message-ID asks (a batch makes a candidate of every letter).
        return addresses(self.stored_recipients)

    @classmethod
    def of(cls, row: tuple) -> "Candidate":
        """From a row of FIELDS."""
        letter_id, received_at, lead, sender, recipients, reused = row
        return cls(letter_id, received_at, lead, (sender or "").lower(), recipients, reused)


def same_conversation(sender: str, recipients: frozenset[str], candidate: Candidate) -> bool:
    sender = (sender or "").lower()
    if sender and (sender == candidate.sender or sender in candidate.recipients):
        return True
    return bool(candidate.sender) and candidate.sender in recipients


def thread_parent(*, sender: str, recipients, candidates) -> Candidate | None:
    """The latest candidate that counts: any letter whose Message-ID is its
    own, a letter with a reused Message-ID only from the same conversation.
    `recipients`: the letter's addresses (`addresses`), or the letter's
    recipients as stored, made into addresses only when a candidate's
    Message-ID is reused."""
    if any(c.reused for c in candidates) and not isinstance(recipients, frozenset):
        recipients = addresses(recipients)
    counted = [c for c in candidates if not c.reused or same_conversation(sender, recipients, c)]
    if not counted:
        return None
    return max(counted, key=lambda c: (c.received_at, c.letter_id))
