"""A visitor is looked up by site through visitor_unique_vid (site, vid), a
session by visitor through session_visitor_started (visitor, -started_at):
the foreign keys' own indexes only cost a write per new visitor and session.
Dropped by name (an AlterField would rebuild both tables on SQLite)."""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = (
    ("tracker_visitor_site_id_331f8400", "tracker_visitor", "site_id"),
    ("tracker_session_visitor_id_9b1d8d96", "tracker_session", "visitor_id"),
)


class Migration(migrations.Migration):
    dependencies = [
        ("tracker", "0004_session_region"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="session",
                    name="visitor",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="sessions",
                        to="tracker.visitor",
                        verbose_name="visitor",
                    ),
                ),
                migrations.AlterField(
                    model_name="visitor",
                    name="site",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="visitors",
                        to="tracker.site",
                        verbose_name="site",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {name}", f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})"
                )
                for name, table, column in INDEXES
            ],
        ),
    ]
