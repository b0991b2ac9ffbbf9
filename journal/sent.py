"""The journal's "Sent letters": a project's tracked messages with their
figures (engagement owns them and counts them), the filters of that page, one
message's timeline, and a lead's reply timeline, where the inbound source and
the outbound engagement meet."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from attribution.models import Lead
from engagement import selectors as engagement
from engagement.models import PERSON_VERDICTS, Event, EventKind, Message, MessageRecipient, OpenState, Verdict
from mailbox_sync.models import Reply
from projects.models import Project
from tracker.models import DeviceType

from .filters import DateInput, day_start

PAGE_SIZE = 50
OPENED, CLICKED, REPLIED, NOT_OPENED = "opened", "clicked", "replied", "not_opened"


class MessageFilterForm(forms.Form):
    date_from = forms.DateField(required=False, label=_("From"), widget=DateInput)
    date_to = forms.DateField(required=False, label=_("To"), widget=DateInput)
    campaign = forms.CharField(required=False, max_length=200, label=_("Campaign"))
    state = forms.ChoiceField(
        required=False,
        label=_("State"),
        choices=[
            ("", _("Any state")),
            (OPENED, _("Opened by a person")),
            (CLICKED, _("Clicked by a person")),
            (REPLIED, _("Replied")),
            (NOT_OPENED, _("Not opened by a person")),
        ],
    )

    def __init__(self, data, *, project: Project):
        super().__init__(data)
        self.project = project
        self.fields["campaign"].widget.attrs["placeholder"] = _("Campaign")

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end of the period is before its start."))
        return data

    @property
    def values(self) -> dict:
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}

    def query(self, **changes) -> str:
        query = QueryDict(mutable=True)
        query["project"] = str(self.project.pk)
        for name in ("date_from", "date_to", "campaign", "state"):
            if self.data.get(name):
                query[name] = self.data[name]
        for name, value in changes.items():
            query[name] = value
        return query.urlencode()


def filter_messages(project: Project, form: MessageFilterForm) -> QuerySet[Message]:
    messages = Message.objects.filter(project=project)
    values = form.values
    tz = ZoneInfo(project.time_zone)
    if "date_from" in values:
        messages = messages.filter(created_at__gte=day_start(values["date_from"], tz))
    if "date_to" in values:
        messages = messages.filter(created_at__lt=day_start(values["date_to"] + timedelta(days=1), tz))
    if "campaign" in values:
        messages = messages.filter(campaign=values["campaign"])
    state = values.get("state")
    person_event = Event.objects.filter(message_id=OuterRef("pk"), verdict__in=PERSON_VERDICTS).exclude(method="HEAD")
    if state == OPENED:
        opened = MessageRecipient.objects.filter(message_id=OuterRef("pk"), open_state=OpenState.PERSON)
        messages = messages.filter(Exists(opened))
    elif state == NOT_OPENED:
        opened = MessageRecipient.objects.filter(
            message_id=OuterRef("pk"), open_state__in=[OpenState.PERSON, OpenState.INFERRED]
        )
        messages = messages.exclude(Exists(opened))
    elif state == CLICKED:
        messages = messages.filter(Exists(person_event.filter(kind=EventKind.CLICK)))
    elif state == REPLIED:
        messages = messages.filter(Exists(Event.objects.filter(message_id=OuterRef("pk"), kind=EventKind.REPLY)))
    return messages


def message_page(messages: QuerySet[Message], before: str = "") -> tuple[list[Message], str]:
    """One page, newest first, after the cursor "<iso time>|<id>" (keyset, so
    a deep page costs what the first does); each message carries `figures`."""
    messages = messages.order_by("-created_at", "-id")
    if before:
        try:
            at_text, id_text = before.rsplit("|", 1)
            at, message_id = datetime.fromisoformat(at_text), int(id_text)
        except ValueError:
            at = None
        if at is not None and at.tzinfo is not None:
            messages = messages.filter(created_at__lte=at).filter(
                Q(created_at__lt=at) | Q(created_at=at, id__lt=message_id)
            )
    page = list(messages.select_related("lead")[: PAGE_SIZE + 1])
    cursor = ""
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        cursor = f"{page[-1].created_at.isoformat()}|{page[-1].pk}"
    figures = engagement.totals([message.pk for message in page])
    for message in page:
        message.figures = figures[message.pk]
    return page, cursor


def campaign_figures(messages: QuerySet[Message], form: MessageFilterForm) -> dict | None:
    """With a campaign chosen, the figures of all its letters the other
    filters keep (every page) summed: the campaign's figures."""
    if "campaign" not in form.values:
        return None
    figures = engagement.totals(list(messages.values_list("pk", flat=True)))
    return engagement.summed(list(figures.values()))


@dataclass
class Moment:
    """One line of a timeline."""

    at: datetime
    kind: str  # letter, reply, sent, open, click, reply_event, honeypot
    text: str
    detail: str = ""
    by_person: bool = True
    verdict: str = ""
    url: str = ""


def event_moment(event: Event, *, with_recipient: bool) -> Moment:
    kind = {EventKind.REPLY: "reply_event"}.get(event.kind, event.kind)
    text = event.get_kind_display()
    if event.inferred:
        text = _("Opened (inferred from a click or reply)")
    detail = event.get_verdict_display()
    if event.probable:
        detail = _("%(verdict)s (probable)") % {"verdict": detail}
    if event.device_type and event.by_person:
        detail = f"{detail} · {dict(DeviceType.choices).get(event.device_type, event.device_type)}"
    if with_recipient:
        detail = f"{event.recipient.email} · {detail}"
    return Moment(
        at=event.at,
        kind=kind,
        text=str(text),
        detail=str(detail),
        by_person=event.by_person,
        verdict=event.verdict,
        url=event.link.url if event.link_id else "",
    )


def message_timeline(message: Message) -> list[Moment]:
    """Every event of the message, oldest first (HEAD requests are not events a person reads)."""
    events = (
        Event.objects.filter(message=message)
        .exclude(method="HEAD")
        .select_related("recipient", "link")
        .order_by("at", "id")
    )
    return [event_moment(event, with_recipient=True) for event in events]


def lead_timeline(lead: Lead, letters) -> list[Moment]:
    """The lead's letters, the replies read from Sent, and the tracked letters
    sent to it with their opens, clicks and replies, in time order."""
    moments = []
    for letter in letters:
        moments.append(
            Moment(
                letter.received_at,
                "letter",
                str(_("Letter from %(sender)s") % {"sender": letter.sender_email or "—"}),
                letter.subject,
            )
        )
    first_at = min((letter.received_at for letter in letters), default=lead.created_at)
    for reply in Reply.objects.filter(lead=lead).order_by("sent_at", "id"):
        minutes = max(int((reply.sent_at - first_at).total_seconds() // 60), 0)
        moments.append(
            Moment(
                reply.sent_at,
                "reply",
                str(_("Reply sent (read from Sent)")),
                str(_("%(minutes)s min after the first letter") % {"minutes": minutes}),
            )
        )
    messages = engagement.lead_messages(lead)
    for message in messages:
        moments.append(
            Moment(
                message.created_at, "sent", str(_("Tracked letter sent: %(subject)s") % {"subject": message.subject})
            )
        )
    events = (
        Event.objects.filter(message__in=messages)
        .exclude(method="HEAD")
        .select_related("recipient", "link")
        .order_by("at", "id")
    )
    moments.extend(event_moment(event, with_recipient=False) for event in events)
    return sorted(moments, key=lambda moment: moment.at)


def _labelled(counts: dict, choices) -> list[tuple[str, str, int]]:
    names = dict(choices)
    return [(code, str(names.get(code, code)), count) for code, count in sorted(counts.items())]


def figure_kinds(figures: dict) -> tuple[list, list]:
    """The machine opens by kind and people's opens by device, each as
    (code, label in the reader's language, count)."""
    return (
        _labelled(figures["opens"]["machine_by_kind"], Verdict.choices),
        _labelled(figures["devices"], DeviceType.choices),
    )


def message_for_user(project_ids, message_id: int) -> Message | None:
    return Message.objects.filter(project_id__in=project_ids, pk=message_id).select_related("project", "lead").first()
