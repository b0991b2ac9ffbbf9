"""Groups of report days summed, ranked and paged by PostgreSQL.

A month of a big shop's report by campaign or keyword has a thousand groups
or more; the page shows fifty. Reading every group into Python to sort them
there made a report's time grow with the shop. Here the database sums the
period's days per group, orders the groups as the page does, and returns one
page of them with the number of groups and the sums over all of them (window
functions over the grouped rows, in the same statement), so a page costs
about the same whatever the number of groups.

The order is the one the Python path sorts by: the figures, then the group's
values compared character by character (COLLATE "C": the byte order of
UTF-8 is the order of code points, as Python compares strings).

PostgreSQL only (`available`); elsewhere the callers rank in Python.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import QuerySet

ZERO = Decimal("0.00")


def available() -> bool:
    return connection.vendor == "postgresql"


@dataclass
class Part:
    """A grouped query (values of `keys`, then measures) and which of the
    page's measures its columns fill; the others are zero in its rows."""

    queryset: QuerySet
    keys: list[str]  # its group columns, in the page's key order
    measures: dict[str, str]  # page measure → its column


@dataclass
class Page:
    rows: list[dict]  # "key": the group's values as a tuple, then each measure
    groups: int  # how many groups in all
    totals: dict  # each measure summed over every group


def _type(kind: str) -> str:
    return "numeric(20, 2)" if kind == "money" else "bigint"


def ranked_page(
    parts: list[Part],
    measures: dict[str, str],
    order: list[str],
    key_count: int,
    offset: int = 0,
    limit: int | None = None,
    *,
    lowercase: bool = False,
    present: str | None = None,
) -> Page:
    """The groups of the parts' rows put together (a group is a tuple of
    `key_count` values; its measures summed over the parts), ranked by
    `order` (measure names, each largest first) and then by their values,
    the `limit` groups from `offset` (None: all).

    `measures` maps each measure to "count" or "money" (a sum of numeric
    with two decimals, read as a Decimal like the ORM reads it).
    `lowercase`: groups are of the values in lower case; the parts group by
    the values as stored and are merged after (lower() then runs once per
    part's group, not once per row read). `present`: the condition on the
    parts' rows of a group for it to be one (SQL over sums of the measures,
    e.g. "sum(leads) <> 0"; None: every group)."""
    keys = [f"k{n}" for n in range(key_count)]
    outer_keys = [f"lower({key}) AS {key}" if lowercase else key for key in keys]
    selects, params = [], []
    for part in parts:
        sql, part_params = part.queryset.query.sql_with_params()
        columns = [f"q.{column} AS {key}" for column, key in zip(part.keys, keys, strict=True)]
        for name, kind in measures.items():
            column = part.measures.get(name)
            columns.append(f"CAST({f'q.{column}' if column else 0} AS {_type(kind)}) AS {name}")
        selects.append(f"SELECT {', '.join(columns)} FROM ({sql}) q")
        params.extend(part_params)
    sums = ", ".join(f"CAST(sum({name}) AS {_type(kind)}) AS {name}" for name, kind in measures.items())
    totals = ", ".join(f"CAST(sum({name}) OVER () AS {_type(kind)}) AS total_{name}" for name, kind in measures.items())
    ranking = [f"{name} DESC" for name in order] + [f'{key} COLLATE "C"' for key in keys]
    page = " LIMIT %s OFFSET %s" if limit is not None else " OFFSET %s"
    sql = (
        f"WITH g AS (SELECT {', '.join(outer_keys)}, {sums} FROM ({' UNION ALL '.join(selects)}) u"
        f" GROUP BY {', '.join(str(n + 1) for n in range(key_count))}{f' HAVING {present}' if present else ''})"
        f" SELECT g.*, count(*) OVER () AS group_count, {totals} FROM g ORDER BY {', '.join(ranking)}{page}"
    )
    bounds = [limit, offset] if limit is not None else [offset]
    with transaction.atomic(), connection.cursor() as cursor:
        # A few thousand rows: parallel workers cost more to start than they
        # save, the more so on a busy server (the planner's estimate of the
        # grouped rows is what tempts it).
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(sql, [*params, *bounds])
        found = cursor.fetchall()
        if not found and offset:
            # Past the last group: the count and sums still come from the first.
            cursor.execute(sql, [*params, *([1, 0] if limit is not None else [0])])
            first = cursor.fetchall()
        else:
            first = found
    names = list(measures)
    rows = [
        {"key": tuple(row[:key_count]), **dict(zip(names, row[key_count : key_count + len(names)], strict=True))}
        for row in found
    ]
    if not first:
        return Page(rows, 0, {name: ZERO if kind == "money" else 0 for name, kind in measures.items()})
    head = first[0][key_count + len(names) :]
    groups, total_values = head[0], head[1:]
    return Page(rows, groups, dict(zip(names, total_values, strict=True)))
