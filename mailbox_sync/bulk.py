"""Inserting a batch of new letters and their sources in three round trips.

Django's `bulk_create` spends about as much Python time on each letter as
parsing it does (every field of every row goes through the query compiler
and is quoted into the statement's text), and the server then parses a
statement of megabytes, raw sources in hex. Here the ids come from the
letters' sequence in one query, and the rows and the sources go by binary
COPY, which psycopg writes in C. The columns are read from the model, so a
new field is copied too; a column of a type not listed here sends the batch
through `bulk_create` instead.

A unique violation aborts the whole COPY: it surfaces as Django's
IntegrityError, as `bulk_create`'s would, and the caller falls back to
storing the letters one by one.
"""

import functools

from django.db import connection
from django.utils import timezone

from .models import Letter, LetterSource

# PostgreSQL column types → the types psycopg writes in binary COPY.
COPY_TYPES = {
    "bigint": "int8",
    "integer": "int4",
    "smallint": "int2",
    "boolean": "bool",
    "text": "text",
    "jsonb": "jsonb",
    "timestamp with time zone": "timestamptz",
    "bytea": "bytea",
}


def _copy_type(db_type: str | None) -> str | None:
    if db_type is None:
        return None
    if db_type.startswith("varchar("):
        return "text"  # the same bytes on the wire; the column checks the length
    return COPY_TYPES.get(db_type)


def _columns(model) -> tuple[str, list[str], list[str]] | None:
    """The COPY statement's column list, the attributes to read and their
    types; None when a column has a type COPY_TYPES lacks."""
    fields = model._meta.concrete_fields
    types = [_copy_type(field.db_type(connection)) for field in fields]
    if None in types:
        return None
    names = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    return names, [field.attname for field in fields], types


@functools.cache
def _layout():
    letters = _columns(Letter)
    if letters is None or [field.attname for field in LetterSource._meta.concrete_fields] != ["letter_id", "raw"]:
        return None
    stamped = [
        field.attname
        for field in Letter._meta.concrete_fields
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]
    return letters, stamped


def insert_letters(letters: list[Letter], raws: list[bytes]) -> None:
    """Insert new letters (not saved yet) and their raw sources; sets each
    letter's pk. Raises IntegrityError when one is stored already."""
    if not letters:
        return
    layout = _layout() if connection.vendor == "postgresql" else None
    if layout is None:
        Letter.objects.bulk_create(letters)
        # By id: `letter=` would also cache the source on the letter, a
        # reference cycle that keeps the raw bytes until the next full
        # garbage collection.
        LetterSource.objects.bulk_create(
            LetterSource(letter_id=letter.pk, raw=raw) for letter, raw in zip(letters, raws, strict=True)
        )
        return
    (letter_columns, letter_attnames, letter_types), stamped = layout
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [Letter._meta.db_table, Letter._meta.pk.column, len(letters)],
        )
        for letter, (pk,) in zip(letters, cursor.fetchall(), strict=True):
            letter.pk = pk
            for attname in stamped:
                setattr(letter, attname, now)
        with connection.wrap_database_errors:
            copying = cursor.cursor
            letter_table = connection.ops.quote_name(Letter._meta.db_table)
            with copying.copy(f"COPY {letter_table} ({letter_columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(letter_types)
                for letter in letters:
                    copy.write_row([getattr(letter, attname) for attname in letter_attnames])
            source_table = connection.ops.quote_name(LetterSource._meta.db_table)
            with copying.copy(f"COPY {source_table} (letter_id, raw) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea"])
                for letter, raw in zip(letters, raws, strict=True):
                    copy.write_row((letter.pk, raw))
    for letter in letters:
        letter._state.adding = False
        letter._state.db = connection.alias
