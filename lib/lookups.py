"""`column = ANY(array)`: a filter on a batch's values in one parameter.

A batch of letters asks for its UIDs, digests, senders and recipients by the
thousand. Django's `__in` prepares each value on its own and writes a
placeholder per value, which psycopg then splits and quotes one by one: for
a batch, more Python time than the query takes to run. On PostgreSQL the
values go as one array instead; elsewhere (SQLite) as `IN (...)`. For text
and integer columns, whose values need no preparing.

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
            return f"{lhs} = ANY(%s::{column_type}[])", [*params, self.rhs]
        return f"{lhs} IN ({', '.join(['%s'] * len(self.rhs))})", [*params, *self.rhs]
