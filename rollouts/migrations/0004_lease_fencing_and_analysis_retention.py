"""A fencing token on the controller lease; bounded analysis history.

`ControllerLease.generation` grows each time the lease changes hands and every
controller write checks it. Analysis rows record when they were written, under
which lease, and whether they decided anything; the rest are compacted into one
`AnalysisStepSummary` per step (`rollouts.history`).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rollouts', '0003_notification_outbox'),
    ]

    operations = [
        migrations.CreateModel(
            name='AnalysisStepSummary',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('step', models.PositiveSmallIntegerField()),
                ('runs', models.PositiveIntegerField(default=0)),
                ('first_at', models.DateTimeField()),
                ('last_at', models.DateTimeField()),
                ('verdicts', models.JSONField(blank=True, default=dict, help_text='{verdict: count}')),
            ],
            options={
                'ordering': ['rollout', 'step'],
            },
        ),
        migrations.AddField(
            model_name='analysisrun',
            name='decisive',
            field=models.BooleanField(default=False, help_text='it moved the rollout, or failed'),
        ),
        migrations.AddField(
            model_name='analysisrun',
            name='lease_generation',
            field=models.PositiveBigIntegerField(blank=True, help_text='the controller lease it was written under', null=True),
        ),
        migrations.AddField(
            model_name='analysisrun',
            name='recorded_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='generation',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddIndex(
            model_name='analysisrun',
            index=models.Index(fields=['rollout', 'step', 'decisive', 'at'], name='analysisrun_retention'),
        ),
        migrations.AddField(
            model_name='analysisstepsummary',
            name='rollout',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='analysis_summaries', to='rollouts.rollout'),
        ),
        migrations.AddConstraint(
            model_name='analysisstepsummary',
            constraint=models.UniqueConstraint(fields=('rollout', 'step'), name='one_summary_per_step'),
        ),
    ]
