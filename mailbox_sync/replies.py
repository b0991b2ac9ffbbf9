"""The Sent folder: which lead each reply answers, so that the first reply
gives the lead's response time. Only headers are read; nothing from Sent
ever becomes a letter or a lead."""

from django.db import IntegrityError, transaction

from . import parsing, threads
from .imap import FetchedMessage
from .models import Letter, Mailbox, Reply


def store_replies(*, mailbox: Mailbox, fetched: list[FetchedMessage], folder: str, uidvalidity: int) -> list[Reply]:
    """Store the replies not stored yet (same rules as letters: UID, then
    Message-ID or a hash of the headers)."""
    rows = []
    for message in fetched:
        parsed = parsing.parse_reply(message.raw)
        rows.append((parsing.dedupe_key(parsed.message_id, message.raw).replace("\x00", ""), message, parsed))
    taken_keys = set(
        Reply.objects.filter(mailbox=mailbox, dedupe_key__in=[key for key, _m, _p in rows]).values_list(
            "dedupe_key", flat=True
        )
    )
    taken_uids = set(
        Reply.objects.filter(
            mailbox=mailbox, folder=folder, uidvalidity=uidvalidity, uid__in=[m.uid for _k, m, _p in rows]
        ).values_list("uid", flat=True)
    )
    new = []
    for key, message, parsed in rows:
        if key in taken_keys or message.uid in taken_uids:
            continue
        taken_keys.add(key)
        new.append(
            Reply(
                mailbox=mailbox,
                folder=folder,
                uidvalidity=uidvalidity,
                uid=message.uid,
                dedupe_key=key,
                message_id=parsed.message_id.replace("\x00", ""),
                sent_at=message.internal_date,
                recipients=[r.replace("\x00", "") for r in parsed.recipients],
                in_reply_to=parsed.in_reply_to.replace("\x00", ""),
                references=[r.replace("\x00", "") for r in parsed.references],
            )
        )
    if not new:
        return []
    try:
        with transaction.atomic():
            return Reply.objects.bulk_create(new)
    except IntegrityError:  # stored meanwhile by another process: keep the rest
        stored = []
        for reply in new:
            try:
                with transaction.atomic():
                    reply.save(force_insert=True)
                stored.append(reply)
            except IntegrityError:
                continue
        return stored


def match_replies(mailbox: Mailbox, replies) -> int:
    """Link each reply to the lead it answers: the lead of a letter named in
    its In-Reply-To / References, else the latest lead of a correspondent it
    was sent to that began before it. Returns how many were linked."""
    linked = 0
    for reply in sorted(replies, key=lambda r: (r.sent_at, r.pk)):
        lead_id = lead_answered(mailbox.project_id, reply)
        if lead_id is not None:
            Reply.objects.filter(pk=reply.pk).update(lead_id=lead_id)
            reply.lead_id = lead_id
            linked += 1
    return linked


def lead_answered(project_id: int, reply: Reply) -> int | None:
    thread = threads.thread_ids(reply.in_reply_to, reply.references)
    if thread:
        rows = Letter.objects.filter(
            mailbox__project_id=project_id, message_id__in=thread, lead__isnull=False
        ).values_list(*threads.FIELDS)
        parent = threads.thread_parent(
            sender="",
            recipients=threads.addresses(reply.recipients),
            candidates=[threads.Candidate.of(r) for r in rows],
        )
        if parent is not None:
            return parent.lead
    if not reply.recipients:
        return None
    # The leads are reached through their letters: mailbox_sync reads
    # attribution's leads only along its own tables' relations.
    return (
        Letter.objects.filter(
            mailbox__project_id=project_id,
            lead__sender_email__in=reply.recipients,
            lead__created_at__lte=reply.sent_at,
        )
        .order_by("-lead__created_at", "-lead_id")
        .values_list("lead_id", flat=True)
        .first()
    )


def rematch(mailbox: Mailbox, since) -> int:
    """Replies stored before their lead existed (its letter was attributed
    late) are matched again for a while."""
    unmatched = Reply.objects.filter(mailbox=mailbox, lead__isnull=True, sent_at__gte=since)
    return match_replies(mailbox, list(unmatched))
