"""The controller's heartbeat on the lease row; and `deployed` comes to mean production.

Until now a canary became `deployed` when its rollout was created. A canary of
a rollout still in flight is put back to `approved` here (audited), so no model
shows two `deployed` versions; it becomes `deployed` when its rollout promotes.
"""

from django.db import migrations, models

ACTIVE = ["pending", "progressing", "paused", "promoting", "rolling_back"]


def undeploy_canaries_in_flight(apps, schema_editor):
    Rollout = apps.get_model("rollouts", "Rollout")
    ModelVersion = apps.get_model("registry", "ModelVersion")
    Alias = apps.get_model("registry", "Alias")
    AuditEvent = apps.get_model("registry", "AuditEvent")
    for rollout in Rollout.objects.filter(phase__in=ACTIVE).select_related("model", "version"):
        version = rollout.version
        in_production = Alias.objects.filter(model_id=rollout.model_id, name="production", version_id=version.pk)
        if version.status != "deployed" or in_production.exists():
            continue
        reason = f"canary of rollout {rollout.pk}: deployed only once its rollout promotes"
        ModelVersion.objects.filter(pk=version.pk, status="deployed").update(status="approved", status_reason=reason)
        AuditEvent.objects.create(actor="migration", action="version.status", model_name=rollout.model.name,
                                  version_number=version.number, from_state="deployed", to_state="approved",
                                  reason=reason, detail={"rollout": rollout.pk})


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0004_blob_verification'),
        ('rollouts', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='controllerlease',
            name='rollouts_reconciled',
            field=models.PositiveIntegerField(default=0, help_text='by the last finished tick'),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='tick_buckets',
            field=models.JSONField(blank=True, default=list, help_text='cumulative counts per bucket bound'),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='tick_count',
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='tick_duration_s',
            field=models.FloatField(blank=True, help_text="the last finished tick's", null=True),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='tick_finished_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='tick_seconds_sum',
            field=models.FloatField(default=0.0),
        ),
        migrations.AddField(
            model_name='controllerlease',
            name='tick_started_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(undeploy_canaries_in_flight, migrations.RunPython.noop),
    ]
