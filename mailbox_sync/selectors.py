"""Reads for admin, the journal and the API."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .models import Listening, Mailbox, Reply


def mailboxes_with_counts(queryset=None):
    """Mailboxes with their letter count and unreadable-letter count, in one query."""
    queryset = Mailbox.objects.all() if queryset is None else queryset
    return queryset.annotate(
        letter_count=Count("letters", distinct=True),
        unreadable_count=Count("letters", filter=Q(letters__malformed=True), distinct=True),
    )


def response_times(lead_ids) -> dict[int, timedelta]:
    """Each lead's response time: from its first letter (the lead's time) to
    the first reply that answers it. Leads without a reply are absent."""
    first_replies = (
        Reply.objects.filter(lead_id__in=lead_ids)
        .values("lead_id")
        .annotate(first=Min("sent_at"), created=Min("lead__created_at"))
        .values_list("lead_id", "first", "created")
    )
    return {lead_id: max(first - created, timedelta(0)) for lead_id, first, created in first_replies}


@dataclass(frozen=True)
class Hearing:
    """How new letters of a mailbox are heard, for admin: listening /
    polling / reconnecting / reconnect needed, since when, why, and the last
    letter the listener heard of."""

    state: str
    label: str
    since: datetime | None = None
    why: str = ""
    last_letter_at: datetime | None = None


def hearing(mailbox: Mailbox, now: datetime | None = None) -> Hearing:
    """From the mailbox and its `listening` row (select_related it for lists)."""
    now = now or timezone.now()
    try:
        row = mailbox.listening
    except Listening.DoesNotExist:
        row = None
    last = row.last_letter_at if row is not None else None
    if mailbox.state == Mailbox.State.RECONNECT_NEEDED:
        state = Listening.State.RECONNECT_NEEDED
        return Hearing(state, state.label, mailbox.last_error_at, mailbox.last_error, last)
    if row is None or not row.listener or row.held_until is None or row.held_until < now or not mailbox.active:
        why = "" if mailbox.active else str(_("switched off"))
        return Hearing(Listening.State.POLLING, str(_("Polling (no listener holds it)")), None, why, last)
    state = Listening.State(row.state)
    return Hearing(state, state.label, row.state_since, row.last_error, last)
