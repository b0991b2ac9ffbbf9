"""From raw pixel fetches and clicks to events with verdicts, and from events
to each recipient's state.

A batch is stored in one transaction: each event judged alone
(engagement.verdicts), then what needs the other events of its recipient:
- a followed hidden link (honeypot) marks that recipient's clicks within
  ENGAGEMENT_HONEYPOT_SECONDS either side as a scanner's;
- clicks on ENGAGEMENT_BURST_LINKS or more different links within
  ENGAGEMENT_BURST_SECONDS are a scanner's burst.
Earlier events are relabelled, never deleted. Then each recipient's state is
settled: a person's open makes it "opened by a person"; a person's click or a
reply without such an open adds an inferred open; the state only moves up,
except that an open inferred from clicks later found a scanner's (by a burst
or a hidden-link hit in a later batch) is withdrawn: relabelled, not deleted,
and the recipient goes back to what their other events say.

A drain costs the same for a recipient opened thousands of times as for one
opened once: it reads the new events, and of the earlier ones only those the
rules look at (the clicks and hidden-link hits within the burst and honeypot
windows of the new clicks, by the recipient-and-time index). What the whole
history says is kept on the recipient row and moved on by each batch: the
state, the first and last opens by a person, the first reply. The row holds
all that is needed because opens and replies are never relabelled (only clicks
are, and only downwards to a scanner's), the state only moves up, and an
inferred open exists exactly when the state is "inferred" or was before a
person's open.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import reduce
from operator import or_

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tracker.geo import truncate_ip

from . import announce, networks, tokens, verdicts
from .models import PERSON_VERDICTS, Event, EventKind, Link, MessageRecipient, OpenState, Verdict

MAX_USER_AGENT = 500
KIND_OF_TOKEN = {tokens.OPEN: EventKind.OPEN, tokens.CLICK: EventKind.CLICK, tokens.HONEYPOT: EventKind.HONEYPOT}
# An inferred open is placed just before the click or reply it is inferred from.
INFERRED_LEAD = timedelta(milliseconds=1)
WITHDRAWN = "inferred from clicks found to be a scanner's"
STATE_RANK = {OpenState.NONE: 0, OpenState.MACHINE: 1, OpenState.INFERRED: 2, OpenState.PERSON: 3}


def _parse(fields: dict) -> dict | None:
    try:
        kind = KIND_OF_TOKEN[int(fields["k"])]
        return {
            "kind": kind,
            "recipient_id": int(fields["r"]),
            "link_id": int(fields.get("l") or 0) or None,
            "method": fields.get("m", "GET")[:8],
            "user_agent": fields.get("u", "")[:MAX_USER_AGENT],
            "ip": fields.get("i", ""),
            "at": datetime.fromtimestamp(float(fields["t"]), UTC),
        }
    except (KeyError, ValueError, OverflowError):
        return None


def store(entries: list[tuple[str | None, dict]]) -> list[int]:
    """Store a batch of raw events (stream entry id, fields); entries stored
    before (same stream id) and events of recipients or links that no longer
    exist are skipped. Returns the new events' ids."""
    stream_ids = [entry_id for entry_id, _f in entries if entry_id]
    with transaction.atomic():
        seen = set(Event.objects.filter(stream_id__in=stream_ids).values_list("stream_id", flat=True))
        raw = []
        for entry_id, fields in entries:
            if entry_id in seen:
                continue
            parsed = _parse(fields)
            if parsed is not None:
                raw.append((entry_id, parsed))
        if not raw:
            return []
        recipients = MessageRecipient.objects.select_related("message").in_bulk({p["recipient_id"] for _e, p in raw})
        link_messages = dict(
            Link.objects.filter(pk__in={p["link_id"] for _e, p in raw if p["link_id"]}).values_list("pk", "message_id")
        )
        lists = networks.lists()
        window = timedelta(minutes=settings.ENGAGEMENT_SELF_MINUTES)
        rows = []
        for entry_id, p in raw:
            recipient = recipients.get(p["recipient_id"])
            if recipient is None:
                continue
            message = recipient.message
            if p["kind"] == EventKind.CLICK and link_messages.get(p["link_id"]) != message.pk:
                continue
            judgement = verdicts.judge(
                method=p["method"],
                user_agent=p["user_agent"],
                ip=p["ip"],
                lists=lists,
                sender_network=message.sender_network,
                sent_at=message.created_at,
                at=p["at"],
                self_window=window,
            )
            verdict, reason = judgement.verdict, judgement.reason
            if p["kind"] == EventKind.HONEYPOT:
                verdict, reason = Verdict.SCANNER, "followed the hidden link"
            rows.append(
                Event(
                    message_id=message.pk,
                    recipient_id=recipient.pk,
                    kind=p["kind"],
                    verdict=verdict,
                    probable=judgement.probable,
                    reason=reason,
                    link_id=p["link_id"] if p["kind"] == EventKind.CLICK else None,
                    at=p["at"],
                    ip_truncated=truncate_ip(p["ip"]),
                    user_agent=p["user_agent"],
                    method=p["method"],
                    device_type=judgement.device_type,
                    stream_id=entry_id,
                )
            )
        created = Event.objects.bulk_create(rows)
        # Per recipient, the earliest new click or hidden-link hit: earlier
        # events further back than a window cannot be marked by the new ones.
        earliest = {}
        for row in created:
            if row.kind in (EventKind.CLICK, EventKind.HONEYPOT):
                earliest[row.recipient_id] = min(row.at, earliest.get(row.recipient_id, row.at))
        relabelled = []
        if earliest:
            relabelled = _mark_honeypot_neighbours(earliest) + _mark_bursts(earliest)
        inferred = settle([row.pk for row in created])
        new_pks = {row.pk for row in created}
        # A person's click of an earlier batch may have inferred an open.
        withdraw_inferred_opens({recipient_id for pk, recipient_id in relabelled if pk not in new_pks})
        new_ids = [row.pk for row in created] + inferred
        announce.emit(new_ids)
    return new_ids


def _since(earliest: dict[int, datetime], window: timedelta) -> Q:
    """Each recipient's events from a window before their earliest new one."""
    return reduce(or_, (Q(recipient_id=pk, at__gte=at - window) for pk, at in earliest.items()))


def _relabel_as_scanner(events, reason: str) -> list[tuple[int, int]]:
    """Relabel these events a scanner's; returns (id, recipient id) of those
    that were a person's before."""
    rows = list(events.exclude(verdict=Verdict.SCANNER).values_list("pk", "recipient_id", "verdict"))
    if rows:
        Event.objects.filter(pk__in=[pk for pk, _r, _v in rows]).update(verdict=Verdict.SCANNER, reason=reason)
    return [(pk, recipient_id) for pk, recipient_id, verdict in rows if verdict in PERSON_VERDICTS]


def _mark_honeypot_neighbours(earliest: dict[int, datetime]) -> list[tuple[int, int]]:
    window = timedelta(seconds=settings.ENGAGEMENT_HONEYPOT_SECONDS)
    hits = Event.objects.filter(_since(earliest, window), kind=EventKind.HONEYPOT)
    relabelled = []
    for recipient_id, at in hits.values_list("recipient_id", "at"):
        near = Event.objects.filter(
            recipient_id=recipient_id, kind=EventKind.CLICK, at__gte=at - window, at__lte=at + window
        )
        relabelled += _relabel_as_scanner(near, "near a followed hidden link")
    return relabelled


def _mark_bursts(earliest: dict[int, datetime]) -> list[tuple[int, int]]:
    window = timedelta(seconds=settings.ENGAGEMENT_BURST_SECONDS)
    clicks = defaultdict(list)
    recent = Event.objects.filter(_since(earliest, window), kind=EventKind.CLICK)
    for pk, recipient_id, link_id, at in recent.order_by("at").values_list("pk", "recipient_id", "link_id", "at"):
        clicks[recipient_id].append((at, link_id, pk))
    burst = set()
    for series in clicks.values():
        start = 0
        for end in range(len(series)):
            while series[end][0] - series[start][0] > window:
                start += 1
            if len({link for _at, link, _pk in series[start : end + 1]}) >= settings.ENGAGEMENT_BURST_LINKS:
                burst.update(pk for _at, _link, pk in series[start : end + 1])
    if not burst:
        return []
    return _relabel_as_scanner(Event.objects.filter(pk__in=burst), "burst of clicks on several links")


def settle(event_ids: list[int]) -> list[int]:
    """Move each recipient's state on by their new events (after the marks):
    a person's open makes it "opened by a person" and sets the first and last
    opens; a person's click or a reply makes it "opened (inferred)" and, when
    neither a person's open nor an inferred open was seen before, adds the
    inferred open just before the earliest of them; any other open makes it
    "opened by a machine". The state only moves up. Reads the new events and
    the recipients' rows (locked, so concurrent drains move them on in turn),
    never the earlier events. Returns the ids of the inferred opens made."""
    if not event_ids:
        return []
    new = defaultdict(list)
    rows = Event.objects.filter(pk__in=event_ids).values_list("recipient_id", "kind", "verdict", "inferred", "at")
    for recipient_id, kind, verdict, inferred, at in rows:
        new[recipient_id].append((kind, verdict, inferred, at))
    recipients = MessageRecipient.objects.select_for_update(no_key=True).filter(pk__in=list(new)).order_by("pk")
    inferred_opens, changed = [], []
    for recipient in recipients:
        events = new[recipient.pk]
        person_opens = [at for k, v, i, at in events if k == EventKind.OPEN and v in PERSON_VERDICTS and not i]
        person_acts = [
            at for k, v, _i, at in events if (k == EventKind.CLICK and v in PERSON_VERDICTS) or k == EventKind.REPLY
        ]
        replies = [at for k, _v, _i, at in events if k == EventKind.REPLY]
        before = OpenState(recipient.open_state)
        state = OpenState.NONE
        if person_opens:
            state = OpenState.PERSON
        elif person_acts:
            state = OpenState.INFERRED
            if before in (OpenState.NONE, OpenState.MACHINE):  # no person's open, no inferred one yet
                inferred_opens.append(
                    Event(
                        message_id=recipient.message_id,
                        recipient_id=recipient.pk,
                        kind=EventKind.OPEN,
                        verdict=Verdict.HUMAN,
                        inferred=True,
                        reason="inferred from a click or reply",
                        at=min(person_acts) - INFERRED_LEAD,
                    )
                )
        elif any(k == EventKind.OPEN for k, _v, _i, _at in events):
            state = OpenState.MACHINE
        if STATE_RANK[state] > STATE_RANK[before]:
            recipient.open_state = state
        if person_opens:
            recipient.first_opened_at = min(filter(None, [recipient.first_opened_at, *person_opens]))
            recipient.last_opened_at = max(filter(None, [recipient.last_opened_at, *person_opens]))
        if replies:
            recipient.replied_at = min(filter(None, [recipient.replied_at, *replies]))
        changed.append(recipient)
    made = Event.objects.bulk_create(inferred_opens)
    MessageRecipient.objects.bulk_update(
        changed, ["open_state", "first_opened_at", "last_opened_at", "replied_at"], batch_size=500
    )
    return [event.pk for event in made]


def withdraw_inferred_opens(recipient_ids: set[int]) -> None:
    """These recipients' clicks were a person's and are now a scanner's: an
    open inferred from them no longer stands when no person's click or reply
    is left. It is relabelled (never deleted: a webhook may have told of it)
    and the state goes back to what the other events say ("opened by a
    machine" or "not opened"; a person's open keeps "opened by a person").
    Rare (a scanner's clicks drained before the burst or hidden-link hit that
    gives them away), so it may read these recipients' whole history."""
    if not recipient_ids:
        return
    recipients = MessageRecipient.objects.select_for_update(no_key=True).filter(pk__in=recipient_ids).order_by("pk")
    for recipient in recipients:
        own = Event.objects.filter(recipient_id=recipient.pk)
        person_act = Q(kind=EventKind.CLICK, verdict__in=PERSON_VERDICTS) | Q(kind=EventKind.REPLY)
        if own.filter(person_act).exists():
            continue
        own.filter(kind=EventKind.OPEN, inferred=True, verdict__in=PERSON_VERDICTS).update(
            verdict=Verdict.SCANNER, reason=WITHDRAWN
        )
        if recipient.open_state == OpenState.INFERRED:
            opened = own.filter(kind=EventKind.OPEN, inferred=False).exists()
            recipient.open_state = OpenState.MACHINE if opened else OpenState.NONE
            recipient.save(update_fields=["open_state"])


def reply_record(*, recipient: MessageRecipient, letter_id: int | None, at: datetime) -> Event | None:
    """A recipient's reply (a letter of theirs answering the message), once per letter."""
    with transaction.atomic():
        if letter_id is not None and Event.objects.filter(recipient=recipient, letter_id=letter_id).exists():
            return None
        event = Event.objects.create(
            message_id=recipient.message_id,
            recipient=recipient,
            kind=EventKind.REPLY,
            verdict=Verdict.HUMAN,
            reason="reply letter",
            letter_id=letter_id,
            at=at,
            recorded_at=timezone.now(),
        )
        inferred = settle([event.pk])
        announce.emit([event.pk, *inferred])
    return event
