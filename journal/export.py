"""CSV export of the filtered list, streamed: rows are read in keyset pages
and written as they go, so a million leads never sit in memory at once."""

import csv
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from attribution.models import Lead
from projects.models import Project

from .selectors import journal_page, with_tag_names

CHUNK = 1000
# Spreadsheets run a cell that starts with one of these as a formula
# (CSV injection); a leading apostrophe makes it text again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

HEADER = [
    _("id"),
    _("date"),
    _("time zone"),
    _("sender email"),
    _("sender name"),
    _("subject"),
    _("recipient"),
    _("site"),
    _("channel"),
    _("source"),
    _("medium"),
    _("campaign"),
    _("term"),
    _("content"),
    _("keyword"),
    _("landing page"),
    _("referrer"),
    _("device"),
    _("country"),
    _("city"),
    _("first contact"),
    _("match kind"),
    _("status"),
    _("tags"),
    _("deal amount"),
    _("comment"),
]


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """csv.writer writes to this and gets each line back to yield."""

    def write(self, value):
        return value


def lead_row(lead: Lead, tz: ZoneInfo, site_names: dict[int, str]) -> list:
    return [
        lead.pk,
        lead.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"),
        str(tz),
        lead.sender_email,
        lead.sender_name,
        lead.subject,
        lead.recipient,
        site_names.get(lead.site_id, ""),
        lead.channel,
        lead.source,
        lead.medium,
        lead.campaign,
        lead.term,
        lead.content,
        lead.keyword,
        lead.landing_url,
        lead.referrer,
        lead.device_type,
        lead.country,
        lead.city,
        "yes" if lead.first_contact else "no",
        lead.match_kind,
        lead.status,
        ", ".join(lead.tag_names),
        "" if lead.deal_amount is None else lead.deal_amount,
        lead.comment,
    ]


def csv_lines(project: Project | None, leads: QuerySet[Lead] | None) -> Iterator[str]:
    """The header in the reader's language, then every lead of `leads`,
    newest first. A byte order mark first, so spreadsheet programs read the
    UTF-8 (Cyrillic names) correctly. The header is translated now, while
    the request's language is active, not when the response is streamed."""
    return _lines([str(name) for name in HEADER], project, leads)


def _lines(header: list[str], project: Project | None, leads: QuerySet[Lead] | None) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)
    if project is None or leads is None:
        return
    tz = ZoneInfo(project.time_zone)
    site_names = dict(project.sites.values_list("id", "name"))
    cursor = ""
    while True:
        page, cursor = journal_page(leads, cursor, size=CHUNK)
        with_tag_names(page)
        yield "".join(writer.writerow([safe_cell(value) for value in lead_row(lead, tz, site_names)]) for lead in page)
        if not cursor:
            return


def funnel_csv_lines(table) -> Iterator[str]:
    """The report's end-to-end table as on the page: header, rows, then the
    "All" row; cells are the page's text. Only the names (sources, campaigns:
    text from visitors' links) are guarded against formulas; the figures
    are numbers, a negative ROI included."""
    writer = csv.writer(_Echo())
    keys = table.key_columns
    yield "\ufeff" + writer.writerow(table.header)
    for cells in [*table.rows, table.total]:
        yield writer.writerow([safe_cell(cell) for cell in cells[:keys]] + cells[keys:])
