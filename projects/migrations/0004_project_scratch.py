from django.db import migrations, models

# What a simulation named its scratch project before the field said so.
SCRATCH_NAME = "Simulation (scratch, deleted after the run)"


def mark_scratch(apps, schema_editor):
    apps.get_model("projects", "Project").objects.filter(name=SCRATCH_NAME).update(scratch=True)


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0003_login_lockouts"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="scratch",
            field=models.BooleanField(default=False, editable=False, verbose_name="scratch"),
        ),
        migrations.RunPython(mark_scratch, migrations.RunPython.noop),
    ]
