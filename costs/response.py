"""Manager response time: from a lead's first letter to the first reply read
from a Sent folder (`mailbox_sync`'s replies). Per group of leads: the
median, the share answered within an hour and within a day, and how many
have no reply yet. Shares are of all the group's leads, so a lead with no
reply counts against them.

A reply is read from the Sent folder of one of the project's mailboxes, so
the replying address is that mailbox's address: figures per mailbox are
figures per replying address.
"""

from dataclasses import dataclass
from datetime import timedelta
from statistics import median

from django.db.models import F, Min, OuterRef, QuerySet, Subquery

from attribution.models import Lead
from mailbox_sync.models import Letter, Mailbox, Reply

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@dataclass
class Response:
    leads: int = 0
    answered: int = 0
    median_seconds: int | None = None
    within_hour: float | None = None  # per cent of the leads
    within_day: float | None = None

    @property
    def unanswered(self) -> int:
        return self.leads - self.answered

    def as_dict(self) -> dict:
        return {
            "response_median_seconds": self.median_seconds,
            "answered_within_1h": self.within_hour,
            "answered_within_1d": self.within_day,
            "unanswered": self.unanswered,
        }


def figures(times: list[timedelta | None]) -> Response:
    """`times`: each lead's response time, None for a lead with no reply."""
    return answered_figures([t for t in times if t is not None], len(times))


def answered_figures(answered: list[timedelta], leads: int) -> Response:
    """The figures of `leads` leads of which these were answered (in these times)."""
    result = Response(leads=leads, answered=len(answered))
    if answered:
        result.median_seconds = round(median(t.total_seconds() for t in answered))
    if leads:
        result.within_hour = round(100 * sum(t <= HOUR for t in answered) / leads, 1)
        result.within_day = round(100 * sum(t <= DAY for t in answered) / leads, 1)
    return result


def first_letter_mailbox():
    """The mailbox a lead's first letter reached, as an expression on Lead."""
    return Subquery(Letter.objects.filter(lead=OuterRef("pk")).order_by("received_at", "id").values("mailbox_id")[:1])


def response_times_grouped(leads: QuerySet[Lead], group: dict, counts: dict | None = None) -> dict[tuple, Response]:
    """Response figures per group; `group` maps names to expressions on Lead.
    With `counts` (each group's number of leads, known from elsewhere) only
    the answered leads are read: the others count as leads with no reply."""
    names = {f"g_{name}": expression for name, expression in group.items()}
    if counts is not None:
        leads = leads.filter(replies__isnull=False)
    rows = (
        leads.annotate(**names)
        .annotate(first_reply=Min("replies__sent_at"))
        .values_list(*names, "created_at", "first_reply")
        .order_by()
    )
    times: dict[tuple, list] = {}
    for *key, created, replied in rows:
        delta = None if replied is None else max(replied - created, timedelta(0))
        times.setdefault(tuple(key), []).append(delta)
    if counts is not None:
        return {key: answered_figures(times.get(key, []), n) for key, n in counts.items() if n}
    return {key: figures(values) for key, values in times.items()}


@dataclass
class MailboxResponse:
    mailbox_id: int | None
    name: str
    address: str
    response: Response


def response_by_mailbox(leads: QuerySet[Lead]) -> list[MailboxResponse]:
    """Per mailbox (and so per replying address): the mailbox the lead's first letter reached."""
    grouped = response_times_grouped(leads, {"mailbox": first_letter_mailbox()})
    boxes = {m.pk: m for m in Mailbox.objects.filter(pk__in=[k[0] for k in grouped if k[0] is not None])}
    out = []
    for (mailbox_id,), response in grouped.items():
        box = boxes.get(mailbox_id)
        out.append(MailboxResponse(mailbox_id, box.name if box else "", box.username if box else "", response))
    out.sort(key=lambda m: (-m.response.leads, m.name))
    return out


def response_total(leads: QuerySet[Lead]) -> Response:
    grouped = response_times_grouped(leads, {"all": F("project_id")})
    return next(iter(grouped.values()), Response())


def first_reply_at():
    """When the first reply to a lead was filed in Sent, as an expression on Lead."""
    return Subquery(Reply.objects.filter(lead=OuterRef("pk")).order_by("sent_at").values("sent_at")[:1])


def response_seconds(created_at, first_reply_at) -> int | None:
    if first_reply_at is None:
        return None
    return int(max((first_reply_at - created_at).total_seconds(), 0))


def lead_response_seconds(lead_ids) -> dict[int, int]:
    """Each lead's response time in seconds; leads with no reply are absent."""
    rows = (
        Lead.objects.filter(pk__in=lead_ids, replies__isnull=False)
        .annotate(first_reply=Min("replies__sent_at"))
        .values_list("pk", "created_at", "first_reply")
    )
    return {pk: int(max((replied - created).total_seconds(), 0)) for pk, created, replied in rows}
