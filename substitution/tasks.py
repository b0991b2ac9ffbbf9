from celery import shared_task
from django.utils import timezone

from . import activity, services


@shared_task
def release_expired_leases() -> int:
    """Beat: apply written-behind activity and end expired leases in every pool."""
    return services.release_all_expired(timezone.now())


@shared_task
def flush_activity() -> int:
    """Beat: keep lease expiries in the database within the flush interval."""
    return activity.flush(orphans=True)


@shared_task
def purge_old_leases() -> int:
    """Beat: delete released leases no lead refers to, after the retention period."""
    return services.purge_old_leases(timezone.now())
