"""A visitor is looked up by site through visitor_unique_vid (site, vid), a
session by visitor through session_visitor_started (visitor, -started_at):
the foreign keys' own indexes only cost a write per new visitor and session."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tracker', '0004_session_region'),
    ]

    operations = [
        migrations.AlterField(
            model_name='session',
            name='visitor',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='sessions', to='tracker.visitor', verbose_name='visitor'),
        ),
        migrations.AlterField(
            model_name='visitor',
            name='site',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='visitors', to='tracker.site', verbose_name='site'),
        ),
    ]
