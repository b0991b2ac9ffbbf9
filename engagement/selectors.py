"""Reads: a project's messages, their figures, and a lead's messages.

Figures of a message (or of several summed, e.g. a campaign):
- delivered: recipients whose copy the upstream accepted (relay);
- opens.human: recipients opened by a person (unique human opens);
  opens.machine: machine opens, also apart by kind (`opens.machine_by_kind`);
  opens.inferred: recipients whose open is only inferred from a click or reply;
- clicks.human / clicks.machine, and per link; HEAD requests are never counted;
- replies; first and last open by a person; device types of people's opens.
"""

from collections import Counter, defaultdict

from django.db.models import Count, Max, Min, Q

from .models import PERSON_VERDICTS, Event, EventKind, Link, Message, MessageRecipient, OpenState


def project_messages(project, campaign: str | None = None):
    messages = Message.objects.filter(project=project)
    if campaign is not None:
        messages = messages.filter(campaign=campaign)
    return messages.order_by("-created_at", "-id")


def project_message(project, message_id: int) -> Message | None:
    return Message.objects.filter(project=project, pk=message_id).first()


def _empty() -> dict:
    return {
        "recipients": 0,
        "delivered": 0,
        "opens": {"human": 0, "machine": 0, "inferred": 0, "machine_by_kind": {}},
        "clicks": {"human": 0, "machine": 0},
        "replies": 0,
        "first_open_at": None,
        "last_open_at": None,
        "devices": {},
    }


def totals(message_ids: list[int]) -> dict[int, dict]:
    """Each message's figures, in a few queries whatever their number."""
    result = {pk: _empty() for pk in message_ids}
    if not message_ids:
        return result
    states = (
        MessageRecipient.objects.filter(message_id__in=message_ids)
        .values("message_id", "open_state")
        .annotate(n=Count("id"), delivered=Count("id", filter=Q(delivered_at__isnull=False)))
        .order_by()
    )
    for row in states:
        figures = result[row["message_id"]]
        figures["recipients"] += row["n"]
        figures["delivered"] += row["delivered"]
        if row["open_state"] == OpenState.PERSON:
            figures["opens"]["human"] += row["n"]
        elif row["open_state"] == OpenState.INFERRED:
            figures["opens"]["inferred"] += row["n"]
    counted = Event.objects.filter(message_id__in=message_ids).exclude(method="HEAD")
    rows = (
        counted.values("message_id", "kind", "verdict", "inferred", "device_type")
        .annotate(n=Count("id"), first=Min("at"), last=Max("at"))
        .order_by()
    )
    for row in rows:
        figures = result[row["message_id"]]
        person = row["verdict"] in PERSON_VERDICTS
        if row["kind"] == EventKind.OPEN and not row["inferred"]:
            if person:
                first, last = figures["first_open_at"], figures["last_open_at"]
                figures["first_open_at"] = row["first"] if first is None else min(first, row["first"])
                figures["last_open_at"] = row["last"] if last is None else max(last, row["last"])
                device = row["device_type"] or "unknown"
                figures["devices"][device] = figures["devices"].get(device, 0) + row["n"]
            else:
                figures["opens"]["machine"] += row["n"]
                by_kind = figures["opens"]["machine_by_kind"]
                by_kind[row["verdict"]] = by_kind.get(row["verdict"], 0) + row["n"]
        elif row["kind"] == EventKind.CLICK:
            figures["clicks"]["human" if person else "machine"] += row["n"]
        elif row["kind"] == EventKind.REPLY:
            figures["replies"] += row["n"]
    return result


def summed(figures: list[dict]) -> dict:
    """Several messages' figures as one (a campaign's)."""
    total = _empty()
    for item in figures:
        for key in ("recipients", "delivered", "replies"):
            total[key] += item[key]
        for group, names in (("opens", ("human", "machine", "inferred")), ("clicks", ("human", "machine"))):
            for name in names:
                total[group][name] += item[group][name]
        total["opens"]["machine_by_kind"] = dict(
            Counter(total["opens"]["machine_by_kind"]) + Counter(item["opens"]["machine_by_kind"])
        )
        total["devices"] = dict(Counter(total["devices"]) + Counter(item["devices"]))
        for key, pick in (("first_open_at", min), ("last_open_at", max)):
            if item[key] is not None:
                total[key] = item[key] if total[key] is None else pick(total[key], item[key])
    return total


def link_clicks(message: Message) -> list[dict]:
    """Each link of the message with its clicks by people and by machines."""
    counts = defaultdict(lambda: {"human": 0, "machine": 0})
    rows = (
        Event.objects.filter(message=message, kind=EventKind.CLICK)
        .exclude(method="HEAD")
        .values("link_id", "verdict")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        counts[row["link_id"]]["human" if row["verdict"] in PERSON_VERDICTS else "machine"] += row["n"]
    return [
        {"url": link.url, "position": link.position, **counts[link.pk]} for link in Link.objects.filter(message=message)
    ]


def recipients_with_events(message: Message) -> list[MessageRecipient]:
    return list(MessageRecipient.objects.filter(message=message).prefetch_related("events__link").order_by("id"))


def lead_messages(lead) -> list[Message]:
    """The messages of a lead's timeline: tied to it (by the API's `lead`, or
    because a letter of the lead answered them), or sent through the relay as a
    reply mailbox_sync found in Sent for it (same Message-ID)."""
    reply_ids = [i for i in lead.replies.values_list("message_id", flat=True) if i]
    return list(
        Message.objects.filter(project_id=lead.project_id)
        .filter(Q(lead=lead) | Q(message_id__in=reply_ids))
        .order_by("created_at", "id")
    )
