"""The journal's filters: one form for the list, the report and the export,
so the three always agree on which leads a set of parameters means."""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from attribution.models import Lead, MatchKind, Tag
from projects.models import Project
from substitution.models import Block
from tracker.models import Channel, Site

from .search import contains, search
from .selectors import LOW_CONFIDENCE

LOW = "low"
SOURCE_FIELDS = ("source", "medium", "campaign")
FIRST, RETURNING = "first", "returning"
# The filters' names in query strings, carried by links from page to page.
FILTER_FIELDS = (
    "date_from",
    "date_to",
    "site",
    "block",
    "channel",
    "source",
    "medium",
    "campaign",
    "contact",
    "match",
    "status",
    "tag",
    "q",
)


class DateInput(forms.DateInput):
    input_type = "date"


class LeadFilterForm(forms.Form):
    date_from = forms.DateField(required=False, label=_("From"), widget=DateInput)
    date_to = forms.DateField(required=False, label=_("To"), widget=DateInput)
    site = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("Site"))
    block = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("Block"))
    channel = forms.ChoiceField(required=False, choices=[("", _("Any channel")), *Channel.choices], label=_("Channel"))
    source = forms.CharField(required=False, max_length=200, label=_("Source"))
    medium = forms.CharField(required=False, max_length=200, label=_("Medium"))
    campaign = forms.CharField(required=False, max_length=200, label=_("Campaign"))
    contact = forms.ChoiceField(
        required=False,
        choices=[("", _("First or returning")), (FIRST, _("First contact")), (RETURNING, _("Returning"))],
        label=_("Contact"),
    )
    match = forms.ChoiceField(
        required=False,
        choices=[("", _("Any match")), (LOW, _("Low confidence (any)")), *MatchKind.choices],
        label=_("Matched by"),
    )
    status = forms.ChoiceField(required=False, choices=[("", _("Any status")), *Lead.Status.choices], label=_("Status"))
    tag = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label=_("Tag"))
    q = forms.CharField(required=False, max_length=200, label=pgettext_lazy("journal filters", "Search"))

    def __init__(self, data, *, project: Project):
        super().__init__(data)
        self.project = project
        sites = Site.objects.filter(project=project).order_by("name").values_list("id", "name")
        self.fields["site"].choices = [("", _("Any site")), *sites]
        blocks = Block.objects.filter(project=project).order_by("name").values_list("id", "name")
        self.fields["block"].choices = [("", _("Any block")), *blocks]
        tags = Tag.objects.filter(project=project).order_by("name").values_list("id", "name")
        self.fields["tag"].choices = [("", _("Any tag")), *tags]
        for name in SOURCE_FIELDS:
            self.fields[name].widget.attrs["placeholder"] = self.fields[name].label
            self.fields[name].widget.attrs["title"] = _(
                'Any part of the value, in any case; in double quotes, exactly that value: "spring_sale".'
            )
        self.fields["q"].widget.attrs["placeholder"] = _("Sender or subject")
        self.fields["q"].widget.attrs["title"] = _(
            "Part of the sender's address or name, or of the subject; a whole address finds exactly that sender."
        )

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("The end of the period is before its start."))
        return data

    @property
    def values(self) -> dict:
        """The valid filters only: a mistyped field is reported on the form and
        ignored, the others still apply."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """Midnight of `day` in the project's time zone, as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=tz)


def filter_leads(project: Project, form: LeadFilterForm) -> QuerySet[Lead]:
    """The project's leads that match the form's valid filters."""
    leads = Lead.objects.filter(project=project)
    values = form.values
    tz = ZoneInfo(project.time_zone)
    if "date_from" in values:
        leads = leads.filter(created_at__gte=day_start(values["date_from"], tz))
    if "date_to" in values:
        leads = leads.filter(created_at__lt=day_start(values["date_to"] + timedelta(days=1), tz))
    exact = {"site": "site_id", "block": "lease__block_id", "channel": "channel", "status": "status"}
    leads = leads.filter(**{field: values[name] for name, field in exact.items() if name in values})
    for name in SOURCE_FIELDS:
        if name in values:
            leads = leads.filter(source_match(name, values[name]))
    if "contact" in values:
        leads = leads.filter(first_contact=values["contact"] == FIRST)
    if values.get("match") == LOW:
        leads = leads.filter(match_kind__in=LOW_CONFIDENCE)
    elif "match" in values:
        leads = leads.filter(match_kind=values["match"])
    if "tag" in values:
        # EXISTS, not a join, so aggregates in reports never count a lead twice.
        tagged = Lead.tags.through.objects.filter(lead_id=OuterRef("pk"), tag_id=values["tag"])
        leads = leads.filter(Exists(tagged))
    if "q" in values:
        leads = leads.filter(search(values["q"]))
    return leads


def source_match(column: str, text: str) -> Q:
    """A source, medium or campaign as a marketer types it: any part of the
    value, in any case ("spring" finds "Spring_sale"); in double quotes,
    exactly that value (the list's "only this campaign" links use quotes)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return Q(**{column: text[1:-1]})
    return contains(column, text)


def filter_query(form: LeadFilterForm, **changes) -> str:
    """The query string of the form's filters (project included), with changes."""
    query = QueryDict(mutable=True)
    query["project"] = str(form.project.pk)
    for name in FILTER_FIELDS:
        value = form.data.get(name, "")
        if value:
            query[name] = value
    for name, value in changes.items():
        if value in (None, ""):
            query.pop(name, None)
        else:
            query[name] = str(value)
    return query.urlencode()
