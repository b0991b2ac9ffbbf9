"""Lead events for whoever integrates (webhooks, notifications, analytics).

Listeners subscribe once (in their AppConfig.ready) and are called with the
lead's id only after the transaction that created or changed the lead has
committed, so they never see a lead that was rolled back.
"""

import logging

from django.db import transaction

log = logging.getLogger(__name__)

LEAD_CREATED = "lead.created"
LEAD_UPDATED = "lead.updated"
EVENTS = (LEAD_CREATED, LEAD_UPDATED)

_listeners: dict[str, list] = {event: [] for event in EVENTS}


def subscribe(event: str, listener) -> None:
    if event not in _listeners:
        raise ValueError(f"Unknown event {event!r}")
    if listener not in _listeners[event]:
        _listeners[event].append(listener)


def emit(event: str, lead_id: int) -> None:
    def deliver():
        for listener in list(_listeners[event]):
            try:
                listener(lead_id)
            except Exception:  # noqa: BLE001 - one integration must not stop another
                log.exception("Listener %r failed for %s of lead %s", listener, event, lead_id)

    transaction.on_commit(deliver)
