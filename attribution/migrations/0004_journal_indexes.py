# Indexes for the leads journal (issue 6, "Speed"): a filtered page is the
# newest 50 leads of one project with one column equal to a value, so each
# filtered column gets (project, column, created_at DESC, id DESC) and the page
# is read straight off the index however many leads the project has. Search
# (a substring of sender or subject, case-insensitive) uses trigram indexes on
# PostgreSQL. The indexes exist only in the database, not in the model state:
# attribution/models.py is not changed, so `makemigrations` stays clean.
# On PostgreSQL they are built CONCURRENTLY, so leads keep arriving meanwhile.

import logging

from django.db import migrations

log = logging.getLogger(__name__)

ORDERED = [
    ("lead_project_channel", "channel"),
    ("lead_project_source", "source"),
    ("lead_project_medium", "medium"),
    ("lead_project_campaign", "campaign"),
    ("lead_project_site", "site_id"),
    ("lead_project_status", "status"),
]
# The expressions must match what Django writes for `icontains` on PostgreSQL.
TRIGRAM = [
    ("lead_sender_email_trgm", 'UPPER("sender_email"::text)'),
    ("lead_sender_name_trgm", 'UPPER("sender_name"::text)'),
    ("lead_subject_trgm", 'UPPER("subject"::text)'),
]


def create(apps, schema_editor):
    connection = schema_editor.connection
    postgres = connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgres else ""
    with connection.cursor() as cursor:
        for name, column in ORDERED:
            cursor.execute(
                f'CREATE INDEX {concurrently}IF NOT EXISTS "{name}" '
                f'ON "attribution_lead" ("project_id", "{column}", "created_at" DESC, "id" DESC)'
            )
        if not postgres:
            return
        try:
            # Trusted since PostgreSQL 13: a database owner may create it without superuser rights.
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as error:  # noqa: BLE001 - search still works, by scanning
            log.warning("pg_trgm is not available (%s): journal search will scan the project's leads", error)
            return
        for name, expression in TRIGRAM:
            cursor.execute(
                f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" '
                f'ON "attribution_lead" USING gin ({expression} gin_trgm_ops)'
            )


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    with schema_editor.connection.cursor() as cursor:
        for name, _column in ORDERED + TRIGRAM:
            cursor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("attribution", "0003_tags_comment_deal_exclusions"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
