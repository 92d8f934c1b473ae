# On-call: each model's runbook policy, and the alerts handled (unique per fingerprint, startsAt and status).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        # Only the tables referenced: the earliest migrations that create them.
        ('registry', '0001_initial'),
        ('rollouts', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='RunbookPolicy',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('actions', models.JSONField(blank=True, default=dict)),
                ('dry_run', models.BooleanField(default=False, help_text='record what the alert would have done, do nothing')),
                ('rollback_window_s', models.PositiveIntegerField(default=86400, help_text='production is rolled back only if it was promoted at most this long before the alert')),
                ('changed_at', models.DateTimeField(blank=True, null=True)),
                ('changed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('model', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='runbook_policy', to='registry.registeredmodel')),
            ],
        ),
        migrations.CreateModel(
            name='HandledAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('fingerprint', models.CharField(max_length=64)),
                ('starts_at', models.DateTimeField()),
                ('status', models.CharField(max_length=8)),
                ('alertname', models.CharField(max_length=128)),
                ('model_name', models.CharField(blank=True, db_index=True, max_length=63)),
                ('action', models.CharField(blank=True, choices=[('rollback', 'roll back the rollout in flight, or production promoted within the window'), ('pause', 'pause the rollout in flight'), ('annotate', 'record the alert only')], max_length=16)),
                ('outcome', models.CharField(choices=[('acted', 'Acted'), ('dry_run', 'Dry Run'), ('skipped', 'Skipped'), ('refused', 'Refused'), ('annotated', 'Annotated'), ('resolved', 'Resolved'), ('ignored', 'Ignored')], max_length=16)),
                ('detail', models.TextField(blank=True, help_text='what was done or why not, for people')),
                ('labels', models.JSONField(default=dict)),
                ('annotations', models.JSONField(default=dict)),
                ('received_at', models.DateTimeField()),
                ('received_by', models.CharField(max_length=150)),
                ('rollout', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='alerts', to='rollouts.rollout')),
            ],
            options={
                'ordering': ['-received_at', '-id'],
                'constraints': [models.UniqueConstraint(fields=('fingerprint', 'starts_at', 'status'), name='alert_handled_once')],
            },
        ),
    ]
