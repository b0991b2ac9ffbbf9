"""Reading costs for reports: summed per day, or per a group of source /
medium / campaign, over a period of days (the project's time zone)."""

from datetime import date

from django.db.models import Sum
from django.db.models.functions import Lower

from .models import Cost

GROUP_FIELDS = ("source", "medium", "campaign")


def costs_grouped(project_id: int, date_from: date, date_to: date, fields: tuple[str, ...]) -> dict[tuple, object]:
    """Cost per group over the period: {(value of each field, ...): amount};
    source and medium compared lowercase."""
    wanted = [f for f in fields if f in GROUP_FIELDS]
    annotations = {f"k_{f}": Lower(f) if f != "campaign" else Lower("campaign") for f in wanted}
    rows = (
        Cost.objects.filter(project_id=project_id, day__gte=date_from, day__lte=date_to)
        .annotate(**annotations)
        .values(*annotations)
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {tuple(row[f"k_{f}"] for f in wanted): row["total"] for row in rows}


def costs_by_day_and_source(project_id: int, date_from: date, date_to: date) -> dict[tuple[date, str], object]:
    rows = (
        Cost.objects.filter(project_id=project_id, day__gte=date_from, day__lte=date_to)
        .annotate(k_source=Lower("source"))
        .values("day", "k_source")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    return {(row["day"], row["k_source"]): row["total"] for row in rows}
