"""Sessions counted by queue: the session table's triggers append one row
per statement and group to `costs_sessiondelta` (a plain insert) instead of
adding into the shared sessions-day rows, which made every new visitor of a
project wait for the others' commits on the same day's rows. The deltas are
folded into the days every minute and before a report reads them
(`costs.rollups.fold_session_deltas`). Then every project's report days are
counted from the raw rows."""

import importlib

from django.db import migrations, models

DELTAS = """
    SELECT t.project_id, (s.started_at AT TIME ZONE p.time_zone)::date, s.channel, s.source, s.utm_medium,
           s.utm_campaign, s.keyword, v.site_id, {sign} count(*)
    FROM {rows} s
    JOIN tracker_visitor v ON v.id = s.visitor_id
    JOIN tracker_site t ON t.id = v.site_id
    JOIN projects_project p ON p.id = t.project_id
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
"""
COLUMNS = "project_id, day, channel, source, medium, campaign, keyword, site_id, n"

QUEUE = f"""
CREATE OR REPLACE FUNCTION costs_report_day_sessions_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO costs_sessiondelta ({COLUMNS}) {DELTAS.format(rows="added", sign="")};
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION costs_report_day_sessions_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO costs_sessiondelta ({COLUMNS}) {DELTAS.format(rows="removed", sign="-")};
    RETURN NULL;
END $$;
"""


def queue(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(QUEUE)


def rebuild_all(apps, schema_editor):
    # The rebuild reads leads, letters and sessions as the code does today
    # (the last migration of the report days, so their tables all exist).
    from costs.rollups import rebuild_every_project

    rebuild_every_project()


def add_in_place(apps, schema_editor):
    """Back to 0003's functions (adding into the days at once); a fold first."""
    if schema_editor.connection.vendor != "postgresql":
        return
    from costs.rollups import fold_session_deltas

    fold_session_deltas()
    earlier = importlib.import_module("costs.migrations.0003_report_day_triggers")
    functions = earlier.CREATE.split("CREATE TRIGGER", 1)[0]
    schema_editor.execute(functions.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0003_report_day_triggers"),
    ]

    operations = [
        migrations.CreateModel(
            name="SessionDelta",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("project_id", models.BigIntegerField(verbose_name="project")),
                ("day", models.DateField(verbose_name="day")),
                ("channel", models.CharField(blank=True, max_length=16, verbose_name="channel")),
                ("source", models.CharField(blank=True, max_length=200, verbose_name="source")),
                ("medium", models.CharField(blank=True, max_length=200, verbose_name="medium")),
                ("campaign", models.CharField(blank=True, max_length=200, verbose_name="campaign")),
                ("keyword", models.CharField(blank=True, max_length=200, verbose_name="keyword")),
                ("site_id", models.BigIntegerField(verbose_name="site")),
                ("n", models.IntegerField(verbose_name="sessions")),
            ],
            options={
                "verbose_name": "sessions to count",
                "verbose_name_plural": "sessions to count",
            },
        ),
        migrations.RunPython(queue, add_in_place),
        migrations.RunPython(rebuild_all, migrations.RunPython.noop),
    ]
