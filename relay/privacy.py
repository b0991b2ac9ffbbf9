"""A person's data in the relay's queue: the copies of letters to them (or
from them), kept until the queue's keep period ends (queue.purge).

Erasure, for every copy that has left the queue (sent, failed, skipped):
a copy made for the person alone (a tracked recipient's own copy) loses its
raw bytes; any other copy has their address (and display name) replaced in its
raw bytes. In the recipient lists their address is replaced: the lists keep
their length. A copy still waiting to go out is left as it is (it is the
project's letter in flight) and counted, so the one who erases can run the
erasure again once it has gone.
"""

from django.db.models import Q

from integrations.models import OutboundStatus
from lib.privacy import mentions, readable_bytes, redact, row

from .models import QueuedLetter

LISTS = ("recipients", "delivered", "refused")


def copies_for(project_id: int, email: str) -> list[int]:
    rough = QueuedLetter.objects.filter(project_id=project_id).filter(
        Q(recipients__icontains=email)
        | Q(delivered__icontains=email)
        | Q(refused__icontains=email)
        | Q(mail_from__iexact=email)
    )
    return [pk for pk, *values in rough.values_list("pk", "mail_from", *LISTS) if mentions(values, email)]


def export_person(project_id: int, email: str) -> dict:
    copies = QueuedLetter.objects.filter(pk__in=copies_for(project_id, email)).order_by("created_at", "pk")
    return {"relay_copies": [{**row(copy, exclude=("raw",)), "raw": readable_bytes(copy.raw)} for copy in copies]}


def erase_person(project_id: int, email: str) -> dict:
    erased = pending = 0
    for copy in QueuedLetter.objects.filter(pk__in=copies_for(project_id, email)):
        if copy.status == OutboundStatus.PENDING:
            pending += 1
            continue
        changes = {name: redact(getattr(copy, name), email) for name in LISTS}
        raw = b"" if _only_for(copy, email) else redact(bytes(copy.raw), email)
        QueuedLetter.objects.filter(pk=copy.pk).update(mail_from=redact(copy.mail_from, email), raw=raw, **changes)
        erased += 1
    return {"relay_copies": erased, "relay_copies_pending": pending}


def _only_for(copy: QueuedLetter, email: str) -> bool:
    addresses = [*copy.recipients, *copy.delivered, *(entry[0] for entry in copy.refused if entry)]
    return bool(addresses) and all(str(address).strip().lower() == email for address in addresses)
