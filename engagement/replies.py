"""Replies: a letter read from the inbox whose In-Reply-To / References name a
tracked message's Message-ID is a reply of the recipient who wrote it (and
infers their open). The letter's lead and the message are tied together, so
the lead's timeline shows the message's opens and clicks.

Letters are read from mailbox_sync and leads from attribution, never written."""

import re

from django.db.models import Q

from lib.lookups import AnyOf
from mailbox_sync.models import Letter

from . import storing
from .models import Message, MessageRecipient

ANGLE_ID_RE = re.compile(r"<[^<>\s]+>")


def normalize_message_id(value: str) -> str:
    """`<id@host>` as mailbox_sync stores it."""
    found = ANGLE_ID_RE.findall(value or "")
    if found:
        return found[0][:998]
    value = (value or "").strip()
    return f"<{value}>"[:998] if value else ""


def record_replies_of_leads(lead_ids: list[int]) -> int:
    """Every letter of these leads that answers a tracked message of its
    project becomes a reply event (once per letter). Returns how many were new."""
    letters = list(
        Letter.objects.filter(AnyOf("lead_id", lead_ids))
        .exclude(in_reply_to="", references=[])
        .values("pk", "lead_id", "lead__project_id", "sender_email", "in_reply_to", "references", "received_at")
    )
    if not letters:
        return 0
    wanted = Q()
    for letter in letters:
        thread = [i for i in [letter["in_reply_to"], *letter["references"]] if i]
        wanted |= Q(project_id=letter["lead__project_id"], message_id__in=thread)
    messages = {}
    for message in Message.objects.filter(wanted).exclude(message_id=""):
        messages[(message.project_id, message.message_id)] = message
    recorded = 0
    for letter in letters:
        thread = [letter["in_reply_to"], *reversed(letter["references"])]
        message = next(
            (messages[(letter["lead__project_id"], i)] for i in thread if (letter["lead__project_id"], i) in messages),
            None,
        )
        if message is None:
            continue
        if message.lead_id is None:
            Message.objects.filter(pk=message.pk, lead__isnull=True).update(lead_id=letter["lead_id"])
        recipient = MessageRecipient.objects.filter(
            message=message, email=(letter["sender_email"] or "").strip().lower()
        ).first()
        if recipient is not None and storing.reply_record(
            recipient=recipient, letter_id=letter["pk"], at=letter["received_at"]
        ):
            recorded += 1
    return recorded
