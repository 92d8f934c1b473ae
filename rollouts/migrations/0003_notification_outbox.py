"""The notification outbox: rollout outcomes written with the state change, and every attempt to deliver them."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rollouts', '0002_controller_heartbeat'),
    ]

    operations = [
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event', models.CharField(max_length=40)),
                ('url', models.CharField(help_text="the model's webhook when the outcome happened", max_length=2000)),
                ('payload', models.JSONField(help_text='the body, fixed when the outcome happened')),
                ('message_id', models.CharField(max_length=64, unique=True)),
                ('state', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('retrying', 'Retrying'), ('delivered', 'Delivered'), ('dead', 'Dead')], default='pending', max_length=16)),
                ('attempts', models.PositiveSmallIntegerField(default=0, help_text='claims so far, a sender that died included')),
                ('next_attempt_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('claim_token', models.CharField(blank=True, max_length=64)),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('delivered_at', models.DateTimeField(blank=True, null=True)),
                ('rollout', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='rollouts.rollout')),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='NotificationAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveSmallIntegerField()),
                ('started_at', models.DateTimeField()),
                ('duration_s', models.FloatField()),
                ('status_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('error', models.TextField(blank=True)),
                ('sender', models.CharField(max_length=200)),
                ('notification', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='rollouts.notification')),
            ],
            options={
                'ordering': ['notification', 'number', 'id'],
            },
        ),
        migrations.AddIndex(
            model_name='notification',
            index=models.Index(fields=['state', 'next_attempt_at'], name='notification_due'),
        ),
    ]
