"""What mailbox_sync announces to the apps that build on letters.

`letters stored`: stored letters wait to be turned into leads. mailbox_sync
never imports the app that does it (attribution): that app subscribes once
in its AppConfig.ready, and is called with the letters' ids in arrival order
(a sync announces them as a StoredLetters, which holds the letters too),
on the caller's thread, after the letters have been stored (committed,
unless the caller holds a transaction of its own). Listeners must be
idempotent: letters a crash left unattributed are announced again by the
next sync (`store.attribute_pending`).

`mailbox needs reconnecting`: the provider refused the mailbox's OAuth2
grant (revoked or expired); the mailbox waits for the account manager to
connect it again. Listeners (monitoring, which alerts the project's
managers at once) are called with the mailbox's id and the provider's own
words, after commit, once per refusal: a refused grant is not asked again.

`mailbox connected`: the account manager connected the mailbox with OAuth2
(again): what "needs reconnecting" began is over. Listeners are called with
the mailbox's id, after commit.
"""

import logging

from django.db import transaction

log = logging.getLogger(__name__)

_stored_listeners: list = []
_reconnect_listeners: list = []
_connected_listeners: list = []


def subscribe_letters_stored(listener) -> None:
    """`listener(letter_ids)`: called with every batch of stored letters."""
    if listener not in _stored_listeners:
        _stored_listeners.append(listener)


def subscribe_reconnect_needed(listener) -> None:
    """`listener(mailbox_id, reason)`: called once each time a mailbox's grant is refused."""
    if listener not in _reconnect_listeners:
        _reconnect_listeners.append(listener)


def subscribe_connected(listener) -> None:
    """`listener(mailbox_id)`: called each time a mailbox is connected with OAuth2."""
    if listener not in _connected_listeners:
        _connected_listeners.append(listener)


def unsubscribe(listener) -> None:
    """Stop calling `listener` for any event (tests)."""
    for listeners in (_stored_listeners, _reconnect_listeners, _connected_listeners):
        if listener in listeners:
            listeners.remove(listener)


class StoredLetters(list):
    """The ids of stored letters, announced with the letters themselves as
    they were stored (`letters`: id → Letter) while the sync still holds
    them, so that a listener need not read back what was just written.
    Another listener gets the same objects: a listener may bring a field up
    to date from the database, and changes nothing else on them."""

    def __init__(self, letters):
        letters = list(letters)
        super().__init__(getattr(letter, "pk", letter) for letter in letters)
        self.letters = {letter.pk: letter for letter in letters if not isinstance(letter, int)}


def letters_stored(letter_ids: list[int]) -> None:
    """Announce stored letters (ids, or a StoredLetters). A listener's
    failure is its own to record (attribution records it on the letter); it
    is logged and the other listeners still run."""
    if not isinstance(letter_ids, StoredLetters):
        letter_ids = list(letter_ids)
    if not letter_ids:
        return
    for listener in list(_stored_listeners):
        try:
            listener(letter_ids)
        except Exception:  # noqa: BLE001 - the letters stay stored and are announced again later
            log.exception("Listener %r failed for %s stored letters", listener, len(letter_ids))


def reconnect_needed(mailbox_id: int, reason: str) -> None:
    def deliver():
        for listener in list(_reconnect_listeners):
            try:
                listener(mailbox_id, reason)
            except Exception:  # noqa: BLE001 - one channel must not stop another
                log.exception("Listener %r failed for mailbox %s needing reconnecting", listener, mailbox_id)

    transaction.on_commit(deliver)


def connected(mailbox_id: int) -> None:
    def deliver():
        for listener in list(_connected_listeners):
            try:
                listener(mailbox_id)
            except Exception:  # noqa: BLE001 - one listener must not stop another
                log.exception("Listener %r failed for mailbox %s connected", listener, mailbox_id)

    transaction.on_commit(deliver)
