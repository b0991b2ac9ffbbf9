"""A lease's block is read only within its pool (pool health by block, over
the pool's leases) and by a block's deletion, an admin's rare act that may
scan the leases: its own index only cost a write for every new lease (two
for a new visitor on a page with two pools). Dropped by name: Django's
AlterField(db_index=False) would also drop the foreign key and add it again,
checking every lease while writes to the table wait."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "substitution_lease_block_id_0d1e9598"


class Migration(migrations.Migration):
    dependencies = [
        ("substitution", "0009_address_email_no_pattern_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="lease",
                    name="block",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="leases",
                        to="substitution.block",
                        verbose_name="block",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON substitution_lease (block_id)",
                ),
            ],
        ),
    ]
