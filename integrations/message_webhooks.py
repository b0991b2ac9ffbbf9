"""Webhooks for tracked letters: `message.opened`, `message.clicked` and
`message.replied`, one delivery per event and subscribed webhook, signed and
retried like the lead events (integrations.webhooks). A person's events only,
unless the project's engagement settings include machine events; a followed
hidden link is never sent.

A person's click, and an open inferred from one, can still turn out a
machine's: a burst of clicks or a hidden-link hit up to
ENGAGEMENT_HONEYPOT_SECONDS later relabels them in a later drain. Their
deliveries wait until that has had its drain (`settle_delay`), and the event is
read again before it is sent (`webhooks.delivery_attempt`)."""

import uuid
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from engagement import announce
from engagement.models import PERSON_VERDICTS, Event, EventKind
from engagement.services import engagement_settings

from .models import WebhookDelivery
from .webhooks import RETRY_WINDOW, subscribed

EVENT_OF_KIND = {
    EventKind.OPEN: announce.MESSAGE_OPENED,
    EventKind.CLICK: announce.MESSAGE_CLICKED,
    EventKind.REPLY: announce.MESSAGE_REPLIED,
}


def settle_delay() -> timedelta:
    """How long a person's click or inferred open waits before it is sent."""
    return timedelta(seconds=settings.ENGAGEMENT_HONEYPOT_SECONDS + 2 * settings.ENGAGEMENT_DRAIN_SECONDS)


def may_be_relabelled(event: Event) -> bool:
    """A click or an inferred open can still be found a scanner's later."""
    return event.kind == EventKind.CLICK or event.inferred


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def message_event_payload(*, webhook_event: str, event_id: str, event: Event) -> dict:
    message, recipient = event.message, event.recipient
    return {
        "id": event_id,
        "event": webhook_event,
        "occurred_at": _iso(event.at),
        "project": {"id": message.project_id, "name": message.project.name},
        "message": {
            "id": message.pk,
            "subject": message.subject,
            "campaign": message.campaign,
            "lead": message.lead_id,
            "message_id": message.message_id,
        },
        "recipient": {"email": recipient.email, "open_state": recipient.open_state},
        "engagement": {
            "kind": event.kind,
            "verdict": event.verdict,
            "by_person": event.verdict in PERSON_VERDICTS,
            "probable": event.probable,
            "inferred": event.inferred,
            "url": event.link.url if event.link_id else None,
            "device_type": event.device_type,
        },
    }


@transaction.atomic
def deliveries_for_message_events(event_ids: list[int], now: datetime | None = None) -> list[int]:
    """One delivery per event worth sending and per webhook of its project
    that subscribes to its kind. Returns the deliveries' ids."""
    now = now or timezone.now()
    events = list(
        Event.objects.filter(pk__in=event_ids, kind__in=list(EVENT_OF_KIND))
        .select_related("message__project", "recipient", "link")
        .order_by("at", "id")
    )
    by_project = defaultdict(list)
    for event in events:
        by_project[event.message.project_id].append(event)
    ids = []
    for project_id, project_events in by_project.items():
        machines_too = engagement_settings(project_id).webhook_machine_events
        hooks = {name: subscribed(project_id, name) for name in EVENT_OF_KIND.values()}
        for event in project_events:
            if event.method == "HEAD" or (event.verdict not in PERSON_VERDICTS and not machines_too):
                continue
            name = EVENT_OF_KIND[event.kind]
            due = now + settle_delay() if may_be_relabelled(event) else now
            for hook in hooks[name]:
                delivery_id = uuid.uuid4()
                delivery = WebhookDelivery.objects.create(
                    webhook=hook,
                    event_id=delivery_id,
                    event=name,
                    lead_id=event.message.lead_id,
                    payload=message_event_payload(webhook_event=name, event_id=str(delivery_id), event=event),
                    engagement_event=event,
                    next_attempt_at=due,
                    give_up_at=due + RETRY_WINDOW,
                )
                ids.append(delivery.pk)
    return ids
