"""`column = ANY(array)`: a filter on a batch's values in one parameter.

A batch of letters asks for its UIDs, digests, senders and recipients by the
thousand. Django's `__in` prepares each value on its own and writes a
placeholder per value, which psycopg then splits and quotes one by one: for
a batch, more Python time than the query takes to run. On PostgreSQL the
values go as one array instead, sent as the text of an array literal
(`{1,2,3}`, `{"a","b"}`) joined by `str.join` when they are ints or strs:
psycopg dumps a list element by element in Python (0.6 us an id, 0.8 an
address, 2 a digest on this host), which for a sync's batches was more of
attribution's CPU than any other single step. Elsewhere (SQLite) as
`IN (...)`. For text and integer columns, whose values need no preparing.

    Letter.objects.filter(AnyOf("sender_email", senders))
"""

from django.core.exceptions import EmptyResultSet
from django.db.models import F, Lookup


class AnyOf(Lookup):
    lookup_name = "any_of"
    prepare_rhs = False

    def __init__(self, field, values):
        super().__init__(F(field) if isinstance(field, str) else field, list(values))

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        if not self.rhs:
            raise EmptyResultSet
        if connection.vendor == "postgresql":
            # Of the column's own type: an array of another (psycopg picks
            # smallint[] for small numbers) is not matched by a hash or an
            # index. Text without a length: a cast to varchar(n) would cut a
            # longer value down until it matched.
            column_type = self.lhs.output_field.cast_db_type(connection)
            if column_type.startswith("varchar"):
                column_type = "text"
            return f"{lhs} = ANY(%s::{column_type}[])", [*params, array_param(self.rhs)]
        return f"{lhs} IN ({', '.join(['%s'] * len(self.rhs))})", [*params, *self.rhs]


_NEEDS_ESCAPE = ('"', "\\")


def array_literal(values) -> str | None:
    """PostgreSQL's text form of an array of ints, or of strs (None is
    NULL); None for any other values (then pass the list itself)."""
    values = list(values)
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    if all(type(value) is str for value in values):
        if not values:
            return "{}"
        whole = "".join(values)
        if not any(sign in whole for sign in _NEEDS_ESCAPE):
            return '{"' + '","'.join(values) + '"}'
        return "{" + ",".join(_quoted(value) for value in values) + "}"
    if all(value is None or type(value) in (int, str) for value in values):
        return "{" + ",".join("NULL" if value is None else _element(value) for value in values) + "}"
    return None


def _element(value) -> str:
    return str(value) if type(value) is int else _quoted(value)  # one quoted: no join to look through


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_param(values):
    """An array parameter for `%s::type[]`: its literal when it has one, else the list."""
    values = list(values)
    literal = array_literal(values)
    return values if literal is None else literal
