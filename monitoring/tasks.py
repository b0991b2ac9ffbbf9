from celery import shared_task

from . import services


@shared_task
def evaluate_health() -> int:
    """Beat (every 5 minutes): open and close the projects' health conditions."""
    return services.health_evaluate_all()
