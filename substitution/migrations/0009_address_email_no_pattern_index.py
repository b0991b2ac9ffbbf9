"""The address's email keeps its unique index only. Django also gives a
unique text column on PostgreSQL a second index for LIKE 'prefix%'
(varchar_pattern_ops); nothing looks addresses up by prefix (the admin's
search is case-insensitive, which that index cannot serve). Every lease that
starts or ends updates its address row, and as the update changes `held`
(in the free-address index's condition) it is never HOT: each of the
address's indexes gets a new entry, so this one cost a write per lease for
nothing (and a full page image in the log after each checkpoint)."""

from django.db import migrations

INDEX = "substitution_address_email_785e7d70_like"


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON substitution_address (email varchar_pattern_ops)")


class Migration(migrations.Migration):
    dependencies = [
        ("substitution", "0008_lease_address_no_index_of_its_own"),
    ]

    operations = [migrations.RunPython(drop, create)]
