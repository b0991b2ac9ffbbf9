"""Retention of personal data: after PERSONAL_DATA_DAYS (default 365) what
identifies the person who wrote is erased, the leads themselves stay.

Erased: a letter's text, subject, sender name and address, recipient lists
(To, Cc: the customer's colleagues too), kept headers and attachment names,
and its raw source; a lead's sender name and address, subject and comment once
its last letter is that old; the recipients of replies in Sent (the
customer's address). Kept: every lead with its time, source fields, first
contact flag, match kind, status, tags and deal amount, so every count and sum
in reports is the same before and after; the tracked address a lead was sent
to (the project's own, not the customer's); Message-IDs, which later replies
in the thread join by.

So that a customer who writes again after the erasure is still a returning
customer, each erased lead letter's sender is kept as an `ErasedSender`: a
keyed digest of the address (salted with the server's secret and the project)
and the time of their first lead letter. `wrote_before` answers "has this
sender written to the project before" from both the letters and these.

Work goes in batches of ids, each its own short transaction, so a first run
over years of letters never holds locks for long.

A person's erasure (attribution.privacy, on request) erases their letters and
leads with the same functions: `erase_letters`, `erase_leads`, `erase_replies`
over `in_batches`.
"""

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils.crypto import salted_hmac

from mailbox_sync import privacy as letter_privacy
from mailbox_sync.models import Letter, Reply

from .models import ErasedSender, Lead

BATCH = 1000


@dataclass
class Erased:
    letters: int = 0
    leads: int = 0
    replies: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def personal_data_days() -> int:
    return int(getattr(settings, "PERSONAL_DATA_DAYS", 365))


def in_batches(queryset, erase) -> int:
    """Erase the rows of `queryset` a batch of ids at a time, in id order, so
    the walk ends even if a row still matched after its erasure."""
    done, last_id = 0, 0
    while True:
        with transaction.atomic():
            ids = list(queryset.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:BATCH])
            if not ids:
                return done
            erase(ids)
        done, last_id = done + len(ids), ids[-1]


def sender_digest(project_id: int, email: str) -> str:
    """A digest of a sender's address that cannot be turned back into it
    without SECRET_KEY, and that differs between projects."""
    return salted_hmac(
        "attribution.retention.sender", f"{project_id}:{email.strip().lower()}", algorithm="sha256"
    ).hexdigest()


def erased_first_letters(project_id: int, emails) -> dict[str, datetime]:
    """For each of `emails` whose earlier letters were erased: the time of their first lead letter."""
    if not ErasedSender.objects.filter(project_id=project_id).exists():
        return {}  # the usual case: no digest to work out (a batch's senders by the thousand)
    by_digest = {sender_digest(project_id, email): email for email in emails if email}
    rows = ErasedSender.objects.filter(project_id=project_id, digest__in=by_digest)
    return {by_digest[digest]: at for digest, at in rows.values_list("digest", "first_letter_at")}


def wrote_before(project_id: int, email: str, at: datetime) -> bool:
    """First contact or returning customer: has this sender written a lead
    letter to the project before `at`, erased letters included."""
    if not email:
        return False
    earlier = Letter.objects.filter(
        mailbox__project_id=project_id, sender_email=email, received_at__lt=at, lead__isnull=False
    )
    if earlier.exists():
        return True
    first = erased_first_letters(project_id, [email]).get(email)
    return first is not None and first < at


def _remember_senders(ids: list[int]) -> None:
    """Keep the digest of each lead letter's sender, with their earliest letter,
    before the letters lose the address."""
    firsts = (
        Letter.objects.filter(pk__in=ids, lead__isnull=False)
        .exclude(sender_email="")
        .values("mailbox__project_id", "sender_email")
        .annotate(first=Min("received_at"))
    )
    wanted: dict[tuple[int, str], datetime] = {}
    for row in firsts:
        key = (row["mailbox__project_id"], sender_digest(row["mailbox__project_id"], row["sender_email"]))
        wanted[key] = min(row["first"], wanted.get(key, row["first"]))
    for (project_id, digest), first in wanted.items():
        known, created = ErasedSender.objects.select_for_update().get_or_create(
            project_id=project_id, digest=digest, defaults={"first_letter_at": first}
        )
        if not created and first < known.first_letter_at:
            ErasedSender.objects.filter(pk=known.pk).update(first_letter_at=first)


def erase_letters(ids: list[int]) -> None:
    """Keep each lead letter's sender as a digest, then erase the letters' personal fields."""
    _remember_senders(ids)
    letter_privacy.erase_letters(ids)


def erase_leads(ids: list[int]) -> None:
    """Erase what identifies the person behind these leads; every count and sum stays."""
    Lead.objects.filter(pk__in=ids).update(sender_name="", sender_email="", subject="", comment="")


def erase_replies(ids: list[int]) -> None:
    letter_privacy.erase_replies(ids)


def erase_personal_data(now: datetime, days: int | None = None) -> Erased:
    """Erase the personal data of letters that reached the mailbox more than
    `days` (PERSONAL_DATA_DAYS) ago and of leads whose last letter did.
    Idempotent: erased rows are not touched again. 0 days turns it off."""
    days = personal_data_days() if days is None else days
    if days <= 0:
        return Erased()
    cutoff = now - timedelta(days=days)
    has_personal = (
        ~Q(text="")
        | ~Q(subject="")
        | ~Q(sender_name="")
        | ~Q(sender_email="")
        | ~Q(recipients={})
        | ~Q(headers={})
        | ~Q(attachments=[])
    )
    letters = Letter.objects.filter(has_personal, received_at__lt=cutoff)
    # A letter with nothing personal in its fields (no text, no sender) still has its raw source.
    sources = Letter.objects.filter(received_at__lt=cutoff, source__isnull=False)
    leads = Lead.objects.filter(
        ~Q(sender_name="") | ~Q(sender_email="") | ~Q(subject="") | ~Q(comment=""), last_letter_at__lt=cutoff
    )
    replies = Reply.objects.filter(sent_at__lt=cutoff).exclude(recipients=[])
    erased = Erased(
        letters=in_batches(letters, erase_letters),
        leads=in_batches(leads, erase_leads),
        replies=in_batches(replies, erase_replies),
    )
    in_batches(sources, erase_letters)
    return erased
