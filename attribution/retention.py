"""Retention of personal data: after PERSONAL_DATA_DAYS (default 365) what
identifies the person who wrote is erased, the leads themselves stay.

Erased: a letter's text, sender name and address, its kept headers and
attachment names, and its raw source; a lead's sender name and address once
its last letter is that old; the recipients of replies in Sent (the
customer's address). Kept: every lead with its time, source fields, first
contact flag, match kind, status, tags and deal amount, so every count and sum
in reports is the same before and after; subjects and the tracked address.

Work goes in batches of ids, each its own short transaction, so a first run
over years of letters never holds locks for long.
"""

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from mailbox_sync.models import Letter, LetterSource, Reply

from .models import Lead

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


def _in_batches(queryset, erase) -> int:
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


def _erase_letters(ids: list[int]) -> None:
    Letter.objects.filter(pk__in=ids).update(text="", sender_name="", sender_email="", headers={}, attachments=[])
    LetterSource.objects.filter(letter_id__in=ids).delete()


def _erase_leads(ids: list[int]) -> None:
    Lead.objects.filter(pk__in=ids).update(sender_name="", sender_email="")


def _erase_replies(ids: list[int]) -> None:
    Reply.objects.filter(pk__in=ids).update(recipients=[])


def erase_personal_data(now: datetime, days: int | None = None) -> Erased:
    """Erase the personal data of letters that reached the mailbox more than
    `days` (PERSONAL_DATA_DAYS) ago and of leads whose last letter did.
    Idempotent: erased rows are not touched again. 0 days turns it off."""
    days = personal_data_days() if days is None else days
    if days <= 0:
        return Erased()
    cutoff = now - timedelta(days=days)
    has_personal = ~Q(text="") | ~Q(sender_name="") | ~Q(sender_email="") | ~Q(headers={}) | ~Q(attachments=[])
    letters = Letter.objects.filter(has_personal, received_at__lt=cutoff)
    # A letter with nothing personal in its fields (no text, no sender) still has its raw source.
    sources = Letter.objects.filter(received_at__lt=cutoff, source__isnull=False)
    leads = Lead.objects.filter(~Q(sender_name="") | ~Q(sender_email=""), last_letter_at__lt=cutoff)
    replies = Reply.objects.filter(sent_at__lt=cutoff).exclude(recipients=[])
    erased = Erased(
        letters=_in_batches(letters, _erase_letters),
        leads=_in_batches(leads, _erase_leads),
        replies=_in_batches(replies, _erase_replies),
    )
    _in_batches(sources, _erase_letters)
    return erased
