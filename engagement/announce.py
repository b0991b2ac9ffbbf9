"""Engagement events for whoever integrates (webhooks): listeners subscribe
once (in their AppConfig.ready) and are called with the new events' ids after
the transaction that stored them has committed. Engagement never imports its
listeners."""

import logging

from django.db import transaction

log = logging.getLogger(__name__)

MESSAGE_OPENED = "message.opened"
MESSAGE_CLICKED = "message.clicked"
MESSAGE_REPLIED = "message.replied"
EVENTS = (MESSAGE_OPENED, MESSAGE_CLICKED, MESSAGE_REPLIED)

_listeners: list = []


def subscribe(listener) -> None:
    """`listener(event_ids)`: called once per stored batch."""
    if listener not in _listeners:
        _listeners.append(listener)


def emit(event_ids: list[int]) -> None:
    event_ids = [pk for pk in event_ids if pk]
    if not event_ids:
        return

    def deliver():
        for listener in list(_listeners):
            try:
                listener(event_ids)
            except Exception:  # noqa: BLE001 - one integration must not stop another
                log.exception("Listener %r failed for engagement events %s", listener, event_ids[:10])

    transaction.on_commit(deliver)
