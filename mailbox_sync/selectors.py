"""Reads for admin, the journal and the API."""

from datetime import timedelta

from django.db.models import Count, Min, Q

from .models import Mailbox, Reply


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
