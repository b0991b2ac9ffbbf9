# Trigram indexes for the journal's source, medium and campaign filters (issue
# 6): a marketer types part of a value in any case ("spring" finds
# "Spring_sale_2024"), so the filter is a case-insensitive "contains", which a
# B-tree cannot serve. As in 0004 they exist only in the database (the model
# state is unchanged), are built CONCURRENTLY on PostgreSQL, and are skipped
# where pg_trgm is missing (SQLite, the embedded default): the filter then
# reads the project's leads in time order, which is still right, only slower.

import logging

from django.db import migrations

log = logging.getLogger(__name__)

# The expressions must match what Django writes for `icontains` on PostgreSQL.
TRIGRAM = [
    ("lead_source_trgm", 'UPPER("source"::text)'),
    ("lead_medium_trgm", 'UPPER("medium"::text)'),
    ("lead_campaign_trgm", 'UPPER("campaign"::text)'),
]


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as error:  # noqa: BLE001 - the filters still work, by scanning
            log.warning("pg_trgm is not available (%s): source filters will scan the project's leads", error)
            return
        for name, expression in TRIGRAM:
            cursor.execute(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" '
                f'ON "attribution_lead" USING gin ({expression} gin_trgm_ops)'
            )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, _expression in TRIGRAM:
            cursor.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("attribution", "0004_journal_indexes"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
