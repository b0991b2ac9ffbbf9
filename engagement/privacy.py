"""A person's data among the letters the project sent: their recipient rows
(one per message), the opens, clicks and replies recorded for them, and the
opt-out list.

Erasure keeps every recipient row and event, so the message's totals stay the
same: the recipient's address becomes a placeholder unique to the row, and the
events lose the truncated IP address and user agent (kind, verdict and time
stay). The opt-out entry stays: it is the person's own wish not to be tracked,
and erasing it would start tracking them again.
"""

from lib.privacy import row

from .models import Event, MessageRecipient, OptOut


def recipients_of(project_id: int, email: str):
    return MessageRecipient.objects.filter(message__project_id=project_id, email=email)


def export_person(project_id: int, email: str) -> dict:
    recipients = recipients_of(project_id, email).select_related("message").order_by("message__created_at", "pk")
    events: dict[int, list[dict]] = {}
    for event in Event.objects.filter(recipient__in=recipients).order_by("at", "pk"):
        events.setdefault(event.recipient_id, []).append(row(event))
    return {
        "messages": [
            {
                "message": row(recipient.message),
                "recipient": row(recipient),
                "events": events.get(recipient.pk, []),
            }
            for recipient in recipients
        ],
        "opt_outs": [row(opt_out) for opt_out in OptOut.objects.filter(project_id=project_id, email=email)],
    }


def erased_address(recipient_id: int) -> str:
    return f"erased-{recipient_id}@erased.invalid"


def erase_person(project_id: int, email: str) -> dict:
    ids = list(recipients_of(project_id, email).values_list("pk", flat=True))
    events = Event.objects.filter(recipient_id__in=ids).update(ip_truncated=None, user_agent="")
    for pk in ids:
        MessageRecipient.objects.filter(pk=pk).update(email=erased_address(pk))
    return {"recipients": len(ids), "events": events}
