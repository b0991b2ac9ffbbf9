"""Letters → leads: which visitor (and so which source) wrote each letter.

One path for every letter: `batch.attribute_letters` decides a batch of
letters in arrival order, and a single letter is a batch of one. mailbox_sync
announces "letters stored" and `attribute_stored` (subscribed in
AppConfig.ready) listens; mailbox_sync never imports attribution.
"""

import logging

from mailbox_sync.models import Letter

from .batch import attribute_letters
from .models import Lead

log = logging.getLogger(__name__)

__all__ = ["attribute_letter", "attribute_letters", "attribute_stored"]


def attribute_letter(letter_id: int) -> Lead | None:
    """Make or join the lead of one stored letter: a batch of one.
    Idempotent: a letter already attributed keeps its lead, so one letter
    never makes two leads."""
    attribute_letters([letter_id])
    letter = Letter.objects.filter(pk=letter_id).select_related("lead").only("lead").first()
    return letter.lead if letter is not None else None


def attribute_stored(letter_ids: list[int]) -> None:
    """The listener of "letters stored": the letters as one batch (read from
    what the sync stored when it announces them with the letters). When the
    batch fails, each letter is attributed as a batch of one, so that a
    failure is recorded on the one letter that caused it; that letter stays
    stored and is retried by a later sync."""
    try:
        attribute_letters(letter_ids, stored=getattr(letter_ids, "letters", None))
        return
    except Exception:  # noqa: BLE001 - found out letter by letter below
        log.exception("Attribution of a batch of %s letters failed; attributing them one by one", len(letter_ids))
    for letter_id in letter_ids:
        try:
            attribute_letters([letter_id])
        except Exception as error:  # noqa: BLE001 - one bad letter must not stop the rest
            log.exception("Attribution failed for letter %s", letter_id)
            Letter.objects.filter(pk=letter_id).update(attribution_error=f"{type(error).__name__}: {error}"[:1000])
