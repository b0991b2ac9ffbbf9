"""Costs of whole weeks (`CostWeek`), so that a report of a period reads a
row per week and group instead of one per day and group. The cost table's
trigger keeps them in the statement that writes the costs (an import, the
API, admin, a project's deletion): a cost added adds its amount and one row
to its week, one removed takes them away (the week's row goes with its last
cost), one changed does both. Then the weeks are counted from the costs."""

from django.db import migrations, models

KEEP = """
CREATE FUNCTION costs_cost_week() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE costs_costweek
        SET amount = amount - OLD.amount, costs = costs - 1
        WHERE project_id = OLD.project_id AND week = date_trunc('week', OLD.day)::date
          AND source = OLD.source AND medium = OLD.medium AND campaign = OLD.campaign;
        DELETE FROM costs_costweek
        WHERE project_id = OLD.project_id AND week = date_trunc('week', OLD.day)::date
          AND source = OLD.source AND medium = OLD.medium AND campaign = OLD.campaign AND costs <= 0;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO costs_costweek AS w (project_id, week, source, medium, campaign, amount, costs)
        VALUES (NEW.project_id, date_trunc('week', NEW.day)::date, NEW.source, NEW.medium, NEW.campaign,
                NEW.amount, 1)
        ON CONFLICT (project_id, week, source, medium, campaign)
        DO UPDATE SET amount = w.amount + excluded.amount, costs = w.costs + 1;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER costs_cost_week AFTER INSERT OR UPDATE OR DELETE ON costs_cost
FOR EACH ROW EXECUTE FUNCTION costs_cost_week();

INSERT INTO costs_costweek (project_id, week, source, medium, campaign, amount, costs)
SELECT project_id, date_trunc('week', day)::date, source, medium, campaign, sum(amount), count(*)
FROM costs_cost
GROUP BY 1, 2, 3, 4, 5;
"""
DROP = """
DROP TRIGGER IF EXISTS costs_cost_week ON costs_cost;
DROP FUNCTION IF EXISTS costs_cost_week();
"""


def keep(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(KEEP)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0004_session_deltas"),
    ]

    operations = [
        migrations.CreateModel(
            name="CostWeek",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("project_id", models.BigIntegerField(verbose_name="project")),
                ("week", models.DateField(help_text="Its Monday", verbose_name="week")),
                ("source", models.CharField(max_length=200, verbose_name="source")),
                ("medium", models.CharField(blank=True, max_length=200, verbose_name="medium")),
                ("campaign", models.CharField(blank=True, max_length=200, verbose_name="campaign")),
                ("amount", models.DecimalField(decimal_places=2, default=0, max_digits=18, verbose_name="amount")),
                ("costs", models.IntegerField(default=0, verbose_name="cost rows")),
            ],
            options={
                "verbose_name": "costs of a week",
                "verbose_name_plural": "costs of weeks",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("project_id", "week", "source", "medium", "campaign"), name="cost_week_unique_key"
                    )
                ],
            },
        ),
        migrations.RunPython(keep, drop),
    ]
