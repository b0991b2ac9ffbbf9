"""Allocation reads the head of two partial indexes (free addresses in LRU
order, unreleased leases by expiry). Every allocation and release leaves a
dead entry there that only VACUUM removes, so with the default threshold
(20% of the table) a 100,000-address pool would scan up to 20,000 dead
entries per allocation. Vacuum these tables after a fixed number of changes."""

from django.db import migrations

TABLES = ("substitution_address", "substitution_lease")


def vacuum_often(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,"
            " autovacuum_analyze_scale_factor = 0.02)"
        )


def vacuum_as_default(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"ALTER TABLE {table} RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
            " autovacuum_analyze_scale_factor)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("substitution", "0004_address_held_flag_free_lru_index"),
    ]

    operations = [migrations.RunPython(vacuum_often, vacuum_as_default)]
