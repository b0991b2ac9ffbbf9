"""Letter sources compressed with lz4 instead of pglz on PostgreSQL 14+
built with lz4: storing a batch of letters spends most of its database time
compressing their bytes, and lz4 does that several times faster for about
the same size. Rows already stored keep their compression. Elsewhere
(SQLite, a PostgreSQL without lz4) nothing changes."""

from django.db import migrations

TABLE = "mailbox_sync_lettersource"


def lz4_if_available(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
        row = cursor.fetchone()
        if row is None or "lz4" not in (row[0] or []):
            return
        cursor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "raw" SET COMPRESSION lz4')


def pglz_again(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'")
        if cursor.fetchone() is not None:
            cursor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "raw" SET COMPRESSION pglz')


class Migration(migrations.Migration):
    dependencies = [("mailbox_sync", "0002_sync_in_depth")]

    operations = [migrations.RunPython(lz4_if_available, pglz_again)]
