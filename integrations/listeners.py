"""Lead events (after commit) → one Celery task, only when the project has an
integration that listens."""

from attribution import events

from . import dispatch, tasks


def lead_created(lead_id: int) -> None:
    _enqueue(events.LEAD_CREATED, lead_id)


def lead_updated(lead_id: int) -> None:
    _enqueue(events.LEAD_UPDATED, lead_id)


def _enqueue(event: str, lead_id: int) -> None:
    if dispatch.lead_event_has_work(event, lead_id):
        tasks.on_lead_event.delay(event, lead_id)
