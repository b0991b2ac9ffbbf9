"""A lease's address is looked up through lease_address_started (address,
started_at), so the address column's own index only cost a write per lease.
Dropped by name: Django's AlterField(db_index=False) drops every one-column
index on address_id, lease_one_live_per_address (the partial unique index
that keeps two live leases off one address) included."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "substitution_lease_address_id_2a90feae"


class Migration(migrations.Migration):
    dependencies = [
        ("substitution", "0007_blocks_own_address_and_leased_block"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="lease",
                    name="address",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="leases",
                        to="substitution.address",
                        verbose_name="address",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON substitution_lease (address_id)",
                ),
            ],
        ),
    ]
