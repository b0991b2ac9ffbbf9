"""Inserting a batch of new rows (letters and their sources; attribution's
leads) in a few round trips.

Django's `bulk_create` spends about as much Python time on each letter as
parsing it does (every field of every row goes through the query compiler
and is quoted into the statement's text), and the server then parses a
statement of megabytes, raw sources in hex. Here the ids come from the
table's sequence in one query, and the rows go by binary COPY, which psycopg
writes in C. The columns are read from the model, so a new field is copied
too; a column of a type not listed here sends the batch through
`bulk_create` instead.

A unique violation aborts the whole COPY: it surfaces as Django's
IntegrityError, as `bulk_create`'s would, and the caller falls back to
storing the rows one by one.
"""

import functools
import operator

from django.db import connection
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
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
    "numeric": "numeric",
}


def _copy_type(db_type: str | None) -> str | None:
    if db_type is None:
        return None
    if db_type.startswith("varchar("):
        return "text"  # the same bytes on the wire; the column checks the length
    if db_type.startswith("numeric("):
        return "numeric"  # the column rounds to its scale, as for an INSERT
    return COPY_TYPES.get(db_type)


@functools.cache
def _layout(model) -> tuple[str, list[str], list[str], list[str]] | None:
    """The COPY statement's column list, the attributes to read, their types
    and the attributes stamped with the time of insertion; None when a
    column has a type COPY_TYPES lacks."""
    fields = model._meta.concrete_fields
    types = [_copy_type(field.db_type(connection)) for field in fields]
    if None in types:
        return None
    names = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    stamped = [
        field.attname for field in fields if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]
    return names, [field.attname for field in fields], types, stamped


def copy_insert(model, objects: list) -> None:
    """Insert new model instances (not saved yet) as `bulk_create` would:
    each gets its pk, its auto_now fields the time of insertion and its
    state saved. By COPY on PostgreSQL when every column's type allows it,
    else by `bulk_create`. Raises IntegrityError when a row breaks a
    constraint (nothing of the batch is inserted then)."""
    if not objects:
        return
    layout = _layout(model) if connection.vendor == "postgresql" else None
    if layout is None:
        model.objects.bulk_create(objects)
        return
    with connection.cursor() as cursor:
        _copy_rows(cursor, model, objects, layout)
    _mark_saved(objects)


def _copy_rows(cursor, model, objects: list, layout) -> None:
    columns, attnames, types, stamped = layout
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
        [model._meta.db_table, model._meta.pk.column, len(objects)],
    )
    now = timezone.now()
    for instance, (pk,) in zip(objects, cursor.fetchall(), strict=True):
        instance.pk = pk
        for attname in stamped:
            setattr(instance, attname, now)
    with connection.wrap_database_errors:
        table = connection.ops.quote_name(model._meta.db_table)
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            # The row's values in one C call (a tuple; of one name, the value alone).
            values_of = operator.attrgetter(*attnames)
            for instance in objects:
                copy.write_row(values_of(instance) if len(attnames) > 1 else (values_of(instance),))


@functools.cache
def _fields(model) -> tuple[list[str], dict, bool]:
    """The model's attribute names in field order, its fields by attribute
    name, and whether setting each of those attributes on a new instance
    only stores the value (a plain field, or a foreign key's id: with no
    related object cached yet, its descriptor stores the id and does
    nothing else)."""
    fields = model._meta.concrete_fields
    plain = all(
        type(_class_attribute(model, field.attname)) in (DeferredAttribute, ForeignKeyDeferredAttribute)
        for field in fields
    )
    return [field.attname for field in fields], {field.attname: field for field in fields}, plain


def _class_attribute(model, name: str):
    for klass in model.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return None


def new_instance(model, values: dict, related: dict | None = None):
    """`model(**values)` for a batch's rows: `values` by attribute name
    (`mailbox_id`); the fields left out get their defaults. Built as
    `Model.__init__` builds a row read from the database, by position, but
    without its per-field attribute calls when every field is plain and
    nothing listens to the model's init signals: the values go straight
    into the instance's dict, a seventh of the time positional arguments
    take (keywords take three times those: Django matches each keyword to
    its field, and sets a related object through its descriptor).
    `related`: objects already at hand, by field name, cached as a keyword
    would have cached them (their ids must be among `values`)."""
    names, fields, plain = _fields(model)
    if not values.keys() <= fields.keys():
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(values.keys() - fields.keys()))}")
    row = [values[name] if name in values else fields[name].get_default() for name in names]
    if plain and not (pre_init.has_listeners(model) or post_init.has_listeners(model)):
        instance = model.__new__(model)
        instance._state = ModelState()
        instance.__dict__.update(zip(names, row, strict=True))
    else:
        instance = model(*row)
    for name, value in (related or {}).items():
        if value is not None:
            model._meta.get_field(name).set_cached_value(instance, value)
    return instance


def _mark_saved(objects: list) -> None:
    for instance in objects:
        instance._state.adding = False
        instance._state.db = connection.alias


def insert_letters(letters: list[Letter], raws: list[bytes]) -> None:
    """Insert new letters (not saved yet) and their raw sources; sets each
    letter's pk. Raises IntegrityError when one is stored already."""
    if not letters:
        return
    layout = _layout(Letter) if connection.vendor == "postgresql" else None
    if layout is None or [field.attname for field in LetterSource._meta.concrete_fields] != ["letter_id", "raw"]:
        Letter.objects.bulk_create(letters)
        # By id: `letter=` would also cache the source on the letter, a
        # reference cycle that keeps the raw bytes until the next full
        # garbage collection.
        LetterSource.objects.bulk_create(
            LetterSource(letter_id=letter.pk, raw=raw) for letter, raw in zip(letters, raws, strict=True)
        )
        return
    with connection.cursor() as cursor:
        _copy_rows(cursor, Letter, letters, layout)
        with connection.wrap_database_errors:
            source_table = connection.ops.quote_name(LetterSource._meta.db_table)
            with cursor.cursor.copy(f"COPY {source_table} (letter_id, raw) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea"])
                for letter, raw in zip(letters, raws, strict=True):
                    copy.write_row((letter.pk, raw))
    _mark_saved(letters)
