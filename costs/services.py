"""Writing costs: all rows of one import or none, each day + source + medium
+ campaign replaced rather than added, so repeating an import (or an API
call) changes nothing."""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from projects.models import Project

from .csv_import import CostRow
from .models import Cost, CostCurrency


@dataclass
class Imported:
    created: int
    updated: int
    total: Decimal


def costs_upsert(*, project: Project, rows: list[CostRow], origin: str) -> Imported:
    """Store `rows` for `project` in one transaction: a row whose key exists
    replaces its amount. Returns how many were new and how many replaced."""
    keys = {row.key for row in rows}
    with transaction.atomic():
        existing = set(
            Cost.objects.filter(project=project, day__in={k[0] for k in keys})
            .values_list("day", "source", "medium", "campaign")
            .order_by()
        )
        Cost.objects.bulk_create(
            [
                Cost(
                    project=project,
                    day=row.day,
                    source=row.source,
                    medium=row.medium,
                    campaign=row.campaign,
                    amount=row.amount,
                    origin=origin,
                )
                for row in rows
            ],
            update_conflicts=True,
            unique_fields=["project", "day", "source", "medium", "campaign"],
            update_fields=["amount", "origin", "updated_at"],
            batch_size=1000,
        )
    updated = len(keys & existing)
    return Imported(created=len(keys) - updated, updated=updated, total=sum((r.amount for r in rows), Decimal(0)))


def project_currency(project: Project) -> str:
    found = CostCurrency.objects.filter(project=project).values_list("currency", flat=True).first()
    return found or CostCurrency._meta.get_field("currency").default


def set_project_currency(*, project: Project, currency: str) -> None:
    CostCurrency.objects.update_or_create(project=project, defaults={"currency": currency.upper()})
