from celery import shared_task
from django.utils import timezone

from . import services


@shared_task
def enqueue_due_syncs() -> int:
    """Beat: enqueue a sync for every active mailbox whose time has come.
    Each sync claims its mailbox, so a duplicate enqueue does no harm."""
    ids = services.due_mailbox_ids(timezone.now())
    for mailbox_id in ids:
        sync_mailbox.delay(mailbox_id)
    return len(ids)


@shared_task
def sync_mailbox(mailbox_id: int) -> int:
    """One mailbox's sync; failures are recorded on the mailbox, not raised."""
    return services.sync_mailbox(mailbox_id).stored
