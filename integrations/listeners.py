"""Lead events and engagement events (after commit) → one Celery task, only
when the project has an integration that listens."""

from attribution import events

from . import dispatch, tasks


def leads_created(lead_ids: list[int]) -> None:
    _enqueue(events.LEAD_CREATED, lead_ids)


def leads_updated(lead_ids: list[int]) -> None:
    _enqueue(events.LEAD_UPDATED, lead_ids)


def _enqueue(event: str, lead_ids: list[int]) -> None:
    # A batch of letters makes many leads at once: the check is per project.
    for lead_id in dispatch.leads_with_work(event, lead_ids):
        tasks.on_lead_event.delay(event, lead_id)


def engagement_events(event_ids: list[int]) -> None:
    """A stored batch of opens, clicks and replies: one task makes its webhook deliveries."""
    tasks.on_engagement_events.delay(event_ids)
