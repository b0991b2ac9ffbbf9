from celery import shared_task

from projects.models import Project

from . import rollups


@shared_task
def rebuild_report_days(project_id: int, date_from: str | None = None, date_to: str | None = None) -> int:
    """Count a project's report days again from its leads and sessions (ISO dates; none: every day)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    return rollups.rebuild(
        project,
        rollups.date.fromisoformat(date_from) if date_from else None,
        rollups.date.fromisoformat(date_to) if date_to else None,
    )


@shared_task
def fold_session_deltas() -> int:
    """Beat: add the sessions collect queued into their report days."""
    return rollups.fold_session_deltas()
