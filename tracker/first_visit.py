"""A new visitor's rows for the first-visit statement (PostgreSQL): the
visitor and the session inserted in the same statement as the leases, which
substitution.first_visit completes (see there why one statement)."""

import json
from datetime import datetime
from functools import cache

from django.db import connection

from substitution.visits import NewRows

from .models import Session, Visitor


def supported() -> bool:
    return connection.vendor == "postgresql"


@cache
def _fields(model) -> tuple:
    return tuple(field for field in model._meta.concrete_fields if not field.primary_key)


def _columns(model) -> str:
    # Plain names unquoted: the statement's text stays short (see substitution.first_visit).
    return ",".join(c if c.isidentifier() and c.islower() else connection.ops.quote_name(c) for c in _names(model))


def _names(model) -> list[str]:
    return [field.column for field in _fields(model)]


def _row(instance) -> str:
    """The instance's fields as one JSON object: one parameter for a whole
    row, read back by jsonb_populate_record (dozens of parameters cost more
    to send one by one)."""
    row = {}
    for field in _fields(type(instance)):
        value = field.get_prep_value(getattr(instance, field.attname))
        row[field.column] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(row)


@cache
def _sql() -> str:
    """The inserts' text, the same on every call so the statement is planned once per connection."""
    table = Session._meta.db_table
    visitor_values = ",".join("%s" for _field in _fields(Visitor))
    # The session's row with its visitor's new id put in.
    given = (
        f"jsonb_populate_record(NULL::{table},%s::jsonb||jsonb_build_object('visitor_id',(SELECT id FROM new_visitor)))"
    )
    return (
        f"WITH new_visitor AS (INSERT INTO {Visitor._meta.db_table}({_columns(Visitor)}) "
        f"VALUES({visitor_values}) RETURNING id),"
        f"new_session AS (INSERT INTO {table}({_columns(Session)}) SELECT {_columns(Session)} "
        f"FROM {given} RETURNING id)"
    )


def new_rows(visitor: Visitor, session: Session) -> NewRows:
    """Inserts of an unsaved visitor and its first session, `new_visitor` and `new_session`."""
    params = [field.get_prep_value(getattr(visitor, field.attname)) for field in _fields(Visitor)]
    params.append(_row(session))
    return NewRows(sql=_sql(), params=params)
