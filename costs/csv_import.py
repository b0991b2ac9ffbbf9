"""Reading a CSV of advertising costs: the project's own layout (date,
source, medium, campaign, cost) and the exports of Yandex Direct and Google
Ads, told apart and mapped by their column names. Every bad row is reported
with its line number; a file with any error imports nothing.

Numbers may be written "1 234,56" or "1,234.56"; days as 2025-07-31,
31.07.2025 or 31/07/2025. Rows of one file with the same day and key are
added up (an export by ad group has several rows per campaign and day).
"""

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 100_000
HEADER_SEARCH_LINES = 10  # exports put a title and the period above the header
MAX_FIELD = 200


@dataclass(frozen=True)
class Layout:
    name: str
    columns: dict[str, tuple[str, ...]]  # our field → the column names it may have (lowercase)
    source: str = ""  # fixed source and medium for an ad network's export
    medium: str = ""


OWN = Layout(
    "own",
    {
        "day": ("date", "day", "дата", "день"),
        "source": ("source", "utm_source", "источник"),
        "medium": ("medium", "utm_medium", "канал"),
        "campaign": ("campaign", "utm_campaign", "кампания"),
        "amount": ("cost", "amount", "spend", "расход", "стоимость"),
    },
)
YANDEX_DIRECT = Layout(
    "yandex_direct",
    {
        "day": ("дата", "date", "день"),
        "campaign": ("кампания", "название кампании", "campaign", "campaignname"),
        "amount": ("расход", "расход (руб.)", "расход, руб.", "cost", "расход (руб.) ", "расход с ндс"),
    },
    source="yandex",
    medium="cpc",
)
GOOGLE_ADS = Layout(
    "google_ads",
    {
        "day": ("day", "date", "день"),
        "campaign": ("campaign", "кампания"),
        "amount": ("cost", "стоимость", "расходы"),
    },
    source="google",
    medium="cpc",
)
LAYOUT_LABELS = {
    OWN.name: gettext_lazy("CSV (date, source, medium, campaign, cost)"),
    YANDEX_DIRECT.name: "Yandex Direct",
    GOOGLE_ADS.name: "Google Ads",
}


@dataclass
class CostRow:
    day: date
    source: str
    medium: str
    campaign: str
    amount: Decimal

    @property
    def key(self) -> tuple:
        return (self.day, self.source, self.medium, self.campaign)


@dataclass
class ParsedCosts:
    layout: str = ""
    rows: list[CostRow] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message); line 0: the file

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows)

    @property
    def total(self) -> Decimal:
        return sum((row.amount for row in self.rows), Decimal(0))


def _name(cell: str) -> str:
    return re.sub(r"\s+", " ", cell.replace("\ufeff", "").strip().strip('"').lower())


def _mapping(header: list[str], layout: Layout) -> dict[str, int] | None:
    names = [_name(cell) for cell in header]
    found = {}
    for key, options in layout.columns.items():
        for i, name in enumerate(names):
            if name in options or any(name.startswith(option + " (") for option in options):
                found[key] = i
                break
        else:
            if key in ("medium", "campaign") and layout is OWN:
                continue  # optional in our own layout
            return None
    return found


def _layout_of(header: list[str], text_hint: str) -> tuple[Layout, dict[str, int]] | None:
    names = {_name(cell) for cell in header}
    candidates = [OWN] if names & set(OWN.columns["source"]) else []
    # Google's header is English ("Day", "Cost", "Currency code"); Yandex's is Russian or has "CampaignName".
    if "currency code" in names or "day" in names or "google" in text_hint:
        candidates += [GOOGLE_ADS, YANDEX_DIRECT]
    else:
        candidates += [YANDEX_DIRECT, GOOGLE_ADS]
    for layout in candidates:
        mapping = _mapping(header, layout)
        if mapping is not None:
            return layout, mapping
    return None


def parse_amount(text: str) -> Decimal:
    cleaned = re.sub(r"[\s\u00a0\u202f]|₽|руб\.?|\$|€|[A-Z]{3}$", "", text.strip())
    if "," in cleaned and "." in cleaned:
        cleaned = cleaned.replace(",", "")  # 1,234.56
    else:
        cleaned = cleaned.replace(",", ".")  # 1234,56
    if cleaned in ("", "-", "--"):
        return Decimal(0)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(_("not an amount: %(text)r") % {"text": text}) from None
    if not value.is_finite() or value < 0:
        raise ValueError(_("not an amount: %(text)r") % {"text": text})
    if value >= Decimal(10) ** 12:
        raise ValueError(_("amount too large: %(text)r") % {"text": text})
    return value.quantize(Decimal("0.01"))


def parse_day(text: str) -> date:
    text = text.strip()
    for pattern in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValueError(_("not a date: %(text)r (use 2025-07-31 or 31.07.2025)") % {"text": text})


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _dialect(sample: str) -> str:
    counts = {d: sample.count(d) for d in (";", "\t", ",")}
    return max(counts, key=counts.get)


def parse_costs(data: bytes) -> ParsedCosts:
    """The costs a CSV file holds, or the reasons it cannot be imported."""
    result = ParsedCosts()
    if len(data) > MAX_BYTES:
        result.errors.append((0, _("The file is larger than %(mb)s MB.") % {"mb": MAX_BYTES // (1024 * 1024)}))
        return result
    text = _decode(data)
    lines = text.splitlines()
    if not lines:
        result.errors.append((0, _("The file is empty.")))
        return result
    delimiter = _dialect("\n".join(lines[:HEADER_SEARCH_LINES]))
    try:
        reader = list(csv.reader(io.StringIO(text.replace("\x00", "")), delimiter=delimiter))
    except csv.Error as error:  # e.g. a field over the csv module's size limit: not a costs file
        result.errors.append((0, _("The file is not a CSV that can be read: %(error)s.") % {"error": error}))
        return result
    found, index = None, 0
    for at, header in enumerate(reader[:HEADER_SEARCH_LINES]):
        found, index = _layout_of(header, text[:500].lower()), at
        if found:
            break
    if not found:
        result.errors.append(
            (
                0,
                _(
                    "No header with the columns of a known layout: date, source, medium, campaign, cost; "
                    "or a Yandex Direct or Google Ads export (date or day, campaign, cost)."
                ),
            )
        )
        return result
    layout, mapping = found
    result.layout = layout.name
    summed: dict[tuple, CostRow] = {}
    for offset, cells in enumerate(reader[index + 1 :], start=index + 2):
        if not any(cell.strip() for cell in cells):
            continue
        first = _name(cells[0]) if cells else ""
        if first.startswith(("итого", "total", "всего")):
            continue  # the exports' summary line
        if len(summed) >= MAX_ROWS:
            result.errors.append((offset, _("More than %(rows)s rows: split the file.") % {"rows": MAX_ROWS}))
            break
        try:
            row = _row(cells, layout, mapping)
        except ValueError as error:
            result.errors.append((offset, str(error)))
            continue
        if row.key in summed:
            summed[row.key].amount += row.amount
        else:
            summed[row.key] = row
    result.rows = list(summed.values())
    if not result.rows and not result.errors:
        result.errors.append((0, _("The file has a header but no rows.")))
    return result


def _row(cells: list[str], layout: Layout, mapping: dict[str, int]) -> CostRow:
    def cell(key: str) -> str:
        if key not in mapping:
            return ""
        if mapping[key] >= len(cells):
            raise ValueError(_("the row has no %(column)s column") % {"column": key})
        value = cells[mapping[key]].strip()
        if len(value) > MAX_FIELD:
            raise ValueError(_("%(column)s longer than %(limit)s characters") % {"column": key, "limit": MAX_FIELD})
        return value

    source = cell("source") if "source" in mapping else layout.source
    if not source:
        raise ValueError(_("empty source"))
    return CostRow(
        day=parse_day(cell("day")),
        source=source.lower(),
        medium=(cell("medium") if "medium" in mapping else layout.medium).lower(),
        campaign=cell("campaign"),
        amount=parse_amount(cell("amount")),
    )
