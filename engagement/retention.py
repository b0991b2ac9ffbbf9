"""Events are kept for the project's retention period (engagement settings;
a year for a project that never set one), then deleted in batches."""

from datetime import datetime, timedelta

from django.db.models import Q

from .models import EngagementSettings, Event, Message

DEFAULT_DAYS = EngagementSettings._meta.get_field("retention_days").default
BATCH = 5000


def purge_old_events(now: datetime) -> int:
    deleted = 0
    custom = dict(EngagementSettings.objects.values_list("project_id", "retention_days"))
    projects = set(Message.objects.order_by().values_list("project_id", flat=True).distinct())
    for project_id in projects:
        cutoff = now - timedelta(days=custom.get(project_id, DEFAULT_DAYS))
        while True:
            ids = list(
                Event.objects.filter(Q(message__project_id=project_id), at__lt=cutoff).values_list("pk", flat=True)[
                    :BATCH
                ]
            )
            if not ids:
                break
            deleted += Event.objects.filter(pk__in=ids).delete()[0]
    return deleted
