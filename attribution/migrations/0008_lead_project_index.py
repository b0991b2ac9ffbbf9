"""A lead's project has no index of its own: every index the journal reads
leads by (lead_project_created, _sender and _updated in the model, and the
filters' indexes of migration 0004) starts with the project, so it served
no query those do not, and every lead a sync makes wrote an entry in it.
Dropped by name: Django's AlterField(db_index=False) would also drop the
foreign key and add it again, checking every lead while writes to the table
wait."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "attribution_lead_project_id_f2c685fd"


class Migration(migrations.Migration):
    dependencies = [
        ("attribution", "0007_translatable_names"),
        ("projects", "0004_project_scratch"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="lead",
                    name="project",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="leads",
                        to="projects.project",
                        verbose_name="project",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON attribution_lead (project_id)",
                ),
            ],
        ),
    ]
