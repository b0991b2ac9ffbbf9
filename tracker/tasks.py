from celery import shared_task
from django.utils import timezone

from . import services


@shared_task
def purge_old_sessions() -> dict:
    """Beat: retention of sessions and visitors (see services.purge_old_sessions)."""
    sessions, visitors = services.purge_old_sessions(timezone.now())
    return {"sessions": sessions, "visitors": visitors}
