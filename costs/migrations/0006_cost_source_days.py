"""Costs of a day per source (`CostSourceDay`), for the charts' cost per lead
by source day by day: the cost table's trigger (0005) keeps them too, in the
same statement as the costs. Then they are counted from the costs."""

import importlib

from django.db import migrations, models

KEEP = """
CREATE OR REPLACE FUNCTION costs_cost_week() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE costs_costweek
        SET amount = amount - OLD.amount, costs = costs - 1
        WHERE project_id = OLD.project_id AND week = date_trunc('week', OLD.day)::date
          AND source = OLD.source AND medium = OLD.medium AND campaign = OLD.campaign;
        DELETE FROM costs_costweek
        WHERE project_id = OLD.project_id AND week = date_trunc('week', OLD.day)::date
          AND source = OLD.source AND medium = OLD.medium AND campaign = OLD.campaign AND costs <= 0;
        UPDATE costs_costsourceday
        SET amount = amount - OLD.amount, costs = costs - 1
        WHERE project_id = OLD.project_id AND day = OLD.day AND source = OLD.source;
        DELETE FROM costs_costsourceday
        WHERE project_id = OLD.project_id AND day = OLD.day AND source = OLD.source AND costs <= 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO costs_costweek AS w (project_id, week, source, medium, campaign, amount, costs)
        VALUES (NEW.project_id, date_trunc('week', NEW.day)::date, NEW.source, NEW.medium, NEW.campaign,
                NEW.amount, 1)
        ON CONFLICT (project_id, week, source, medium, campaign)
        DO UPDATE SET amount = w.amount + excluded.amount, costs = w.costs + 1;
        INSERT INTO costs_costsourceday AS d (project_id, day, source, amount, costs)
        VALUES (NEW.project_id, NEW.day, NEW.source, NEW.amount, 1)
        ON CONFLICT (project_id, day, source)
        DO UPDATE SET amount = d.amount + excluded.amount, costs = d.costs + 1;
    END IF;
    RETURN NULL;
END $$;

INSERT INTO costs_costsourceday (project_id, day, source, amount, costs)
SELECT project_id, day, source, sum(amount), count(*)
FROM costs_cost
GROUP BY 1, 2, 3;
"""


def keep(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(KEEP)


def weeks_only(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        earlier = importlib.import_module("costs.migrations.0005_cost_weeks")
        function = earlier.KEEP.split("CREATE TRIGGER", 1)[0]
        schema_editor.execute(function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0005_cost_weeks"),
    ]

    operations = [
        migrations.CreateModel(
            name="CostSourceDay",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("project_id", models.BigIntegerField(verbose_name="project")),
                ("day", models.DateField(verbose_name="day")),
                ("source", models.CharField(max_length=200, verbose_name="source")),
                ("amount", models.DecimalField(decimal_places=2, default=0, max_digits=18, verbose_name="amount")),
                ("costs", models.IntegerField(default=0, verbose_name="cost rows")),
            ],
            options={
                "verbose_name": "costs of a day by source",
                "verbose_name_plural": "costs of days by source",
                "constraints": [
                    models.UniqueConstraint(fields=("project_id", "day", "source"), name="cost_source_day_unique_key")
                ],
            },
        ),
        migrations.RunPython(keep, weeks_only),
    ]
