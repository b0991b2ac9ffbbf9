"""A new visitor's first page view (PostgreSQL): the visitor and the session
inserted in the same statement as the leases, which substitution.first_visit
completes (see there why one statement).

Every new visitor pays for this module, so it builds the rows as plain
values: no model instance is made for rows the statement inserts, and what
can be worked out once (columns, defaults, the statement's text) is.

Other apps may write rows of their own in the same statement (`write_also`):
costs counts the new session in its report days there, instead of its
session table trigger doing it in a query of its own after the statement."""

import json
import uuid
from dataclasses import replace
from datetime import datetime
from functools import cache

from django.db import connection

from substitution.visits import NewRows, SessionFacts, VisitRequest

from .models import Session, Visitor
from .sessions import first_session, session_key_of, visit_of

# The statement's parameters are named: one name used twice is sent once.
# The tracker's names start with "t_"; substitution.first_visit uses others.
_VISITOR_PARAMS = {"site_id": "t_site", "vid": "t_vid", "created_at": "t_at", "last_seen_at": "t_at"}


# Each a common table expression ("name AS (...)") that another app adds to
# the statement; it may read new_visitor's and new_session's rows.
_also: list[str] = []


def write_also(cte: str) -> None:
    """Add `cte` to every first visit's statement (once however often it is
    given; an app's ready() gives it). Both rows are returned whole
    (RETURNING *), so it can read any of their columns."""
    if cte not in _also:
        _also.append(cte)
        _sql.cache_clear()


@cache
def supported() -> bool:
    return connection.vendor == "postgresql"


def _fields(model) -> tuple:
    return tuple(field for field in model._meta.concrete_fields if not field.primary_key)


def _column_names(model) -> list[str]:
    # Plain names unquoted: the statement's text stays short (see substitution.first_visit).
    return [
        c if c.isidentifier() and c.islower() else connection.ops.quote_name(c)
        for c in (field.column for field in _fields(model))
    ]


def _columns(model) -> str:
    return ",".join(_column_names(model))


@cache
def _session_defaults() -> dict:
    """Each session column's default (what the model would store when not
    given), but the visitor's, which the statement puts in."""
    return {
        field.column: field.get_prep_value(field.get_default())
        for field in _fields(Session)
        if field.column != "visitor_id"
    }


def _json_value(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a column value")


@cache
def _sql() -> str:
    """The inserts' text, the same on every call so the statement is planned once per connection."""
    unknown = {field.column for field in _fields(Visitor)} - set(_VISITOR_PARAMS)
    if unknown:
        raise RuntimeError(f"The first-visit statement does not fill visitor columns {sorted(unknown)}")
    table = Session._meta.db_table
    visitor_values = ",".join(f"%({_VISITOR_PARAMS[field.column]})s" for field in _fields(Visitor))
    # The session's row: one parameter for a whole row, read back by
    # json_populate_record (dozens of parameters cost more to send one by
    # one), with its visitor's new id put in.
    values = ",".join(
        "(SELECT id FROM new_visitor)" if column == "visitor_id" else f"r.{column}" for column in _column_names(Session)
    )
    return (
        f"WITH new_visitor AS (INSERT INTO {Visitor._meta.db_table}({_columns(Visitor)}) "
        f"VALUES({visitor_values}) RETURNING *),"
        f"new_session AS (INSERT INTO {table}({_columns(Session)}) SELECT {values} "
        f"FROM json_populate_record(NULL::{table},%(t_session)s::json) r RETURNING *)"
        + "".join(f",{cte}" for cte in _also)
    )


def visit_request(
    visit: VisitRequest,
    request,
    source,
    user_agent: str,
    *,
    last_non_direct_days: int,
    device,
    ip: str,
    ip_hash: str,
) -> VisitRequest:
    """`visit` as a new visitor's first page view: a new visitor id, the
    session it starts (what new_session would record for a visitor created
    now), what the rules read of it, and the inserts of both rows
    (`new_visitor` and `new_session`) for substitution's statement."""
    vid = uuid.uuid4().hex
    session = first_session(
        request, source, user_agent, visit.now, last_non_direct_days=last_non_direct_days, device=device, ip=ip
    )
    row = _session_defaults() | session
    params = {
        "t_site": visit.site_id,
        "t_vid": vid,
        "t_at": visit.now,
        "t_session": json.dumps(row, default=_json_value),
    }
    return replace(
        visit,
        vid=vid,
        facts=visit_of(session, request.url),
        session=SessionFacts(
            id=None,
            key=session_key_of(session["channel"], session["source"], session["utm_campaign"]),
            ga=session["ga_client_id"],
            ym=session["ym_client_id"],
        ),
        ip_hash=ip_hash,
        new_rows=NewRows(sql=_sql(), params=params),
    )
