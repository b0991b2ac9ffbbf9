"""SQL the ORM does not write for us."""

from django.db import connection


def update_rows(model, fields: list[str], rows: list[tuple], condition: str = "") -> None:
    """One UPDATE giving each row (primary key first, then `fields`' values)
    its own values, from a VALUES list (PostgreSQL and SQLite alike; its
    columns are column1, column2, ... in both). `condition`: SQL on the table
    and `v` that a row must also meet."""
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    columns = [model._meta.get_field(name) for name in fields]
    assignments = ", ".join(
        f"{connection.ops.quote_name(field.column)} = v.column{i + 2}" for i, field in enumerate(columns)
    )
    placeholder = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    params = []
    for key, *values in rows:
        params.append(key)
        params += [field.get_db_prep_save(value, connection) for field, value in zip(columns, values, strict=True)]
    sql = (
        f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([placeholder] * len(rows))}) AS v "
        f"WHERE {table}.{connection.ops.quote_name(model._meta.pk.column)} = v.column1"
        + (f" AND ({condition})" if condition else "")
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
