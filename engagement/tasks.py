"""Celery tasks: thin wrappers around the services."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from . import recording, retention


@shared_task
def drain_events() -> int:
    """Beat (every ENGAGEMENT_DRAIN_SECONDS): store what the pixel and clicks
    queued in Redis, for at most that long; a drain_engagement_events process
    may run beside it (each entry goes to one drainer)."""
    return recording.drain(seconds=settings.ENGAGEMENT_DRAIN_SECONDS)


@shared_task
def purge_old_events() -> int:
    return retention.purge_old_events(timezone.now())
