"""Lead events for whoever integrates (webhooks, notifications, analytics).

Listeners subscribe once (in their AppConfig.ready) and are called with the
lead's id only after the transaction that created or changed the lead has
committed, so they never see a lead that was rolled back. A listener that
subscribes with `subscribe_many` is called with a list of lead ids instead:
once for a whole batch of letters attributed together (`emit_many`), so it
can look up what it needs once for the batch. A listener that subscribes
with `subscribe_in_transaction` is called at once, inside the transaction
that writes the leads, with the list of ids: for figures kept from the leads
that must commit or roll back with them (the report days of `costs`).
"""

import logging

from django.db import transaction

log = logging.getLogger(__name__)

LEAD_CREATED = "lead.created"
LEAD_UPDATED = "lead.updated"
EVENTS = (LEAD_CREATED, LEAD_UPDATED)

_listeners: dict[str, list] = {event: [] for event in EVENTS}
_batch_listeners: dict[str, list] = {event: [] for event in EVENTS}
_transaction_listeners: dict[str, list] = {event: [] for event in EVENTS}


def subscribe(event: str, listener) -> None:
    if event not in _listeners:
        raise ValueError(f"Unknown event {event!r}")
    if listener not in _listeners[event]:
        _listeners[event].append(listener)


def subscribe_many(event: str, listener) -> None:
    """`listener(lead_ids)`: called once per emit with every lead id of it."""
    if event not in _batch_listeners:
        raise ValueError(f"Unknown event {event!r}")
    if listener not in _batch_listeners[event]:
        _batch_listeners[event].append(listener)


def subscribe_in_transaction(event: str, listener) -> None:
    """`listener(lead_ids)`: called during the emit, in the writer's transaction; its error is the writer's."""
    if event not in _transaction_listeners:
        raise ValueError(f"Unknown event {event!r}")
    if listener not in _transaction_listeners[event]:
        _transaction_listeners[event].append(listener)


def emit(event: str, lead_id: int) -> None:
    emit_many(event, [lead_id])


def emit_many(event: str, lead_ids) -> None:
    """The event for each of the leads, delivered after commit."""
    lead_ids = list(lead_ids)
    if not lead_ids:
        return
    for listener in list(_transaction_listeners[event]):
        listener(lead_ids)

    def deliver():
        calls = [(listener, lead_id) for listener in list(_listeners[event]) for lead_id in lead_ids]
        calls += [(listener, lead_ids) for listener in list(_batch_listeners[event])]
        for listener, argument in calls:
            try:
                listener(argument)
            except Exception:  # noqa: BLE001 - one integration must not stop another
                log.exception("Listener %r failed for %s of lead(s) %s", listener, event, argument)

    transaction.on_commit(deliver)
