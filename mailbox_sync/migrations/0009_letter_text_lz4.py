"""Letters' text compressed with lz4 instead of pglz on PostgreSQL 14+ built
with lz4, as their sources are (0003): a letter's text of a thousand
characters, two bytes each in Cyrillic, is compressed as the letter is
stored, and pglz took three times lz4's time for the same size (5,000 texts
of a first sync: 35-39 ms against 13-16 ms on this host). Rows already
stored keep their compression. Elsewhere (SQLite, a PostgreSQL without lz4)
nothing changes."""

from django.db import migrations

TABLE = "mailbox_sync_letter"


def lz4_if_available(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
        row = cursor.fetchone()
        if row is None or "lz4" not in (row[0] or []):
            return
        cursor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "text" SET COMPRESSION lz4')


def pglz_again(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'")
        if cursor.fetchone() is not None:
            cursor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "text" SET COMPRESSION pglz')


class Migration(migrations.Migration):
    dependencies = [("mailbox_sync", "0008_letter_mailbox_index")]

    operations = [migrations.RunPython(lz4_if_available, pglz_again)]
