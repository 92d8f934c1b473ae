"""`canary`: a version whose rollout is in flight says so.

Each rollout records the status its version had before it started
(`version_status_before`), where the version returns if the rollout ends
without promoting it. The canary of a rollout already in flight (left
`approved` by earlier mlcp) becomes `canary` here, audited.
"""

from django.db import migrations, models

ACTIVE = ["pending", "progressing", "paused", "promoting", "rolling_back"]


def mark_canaries_in_flight(apps, schema_editor):
    Rollout = apps.get_model("rollouts", "Rollout")
    ModelVersion = apps.get_model("registry", "ModelVersion")
    AuditEvent = apps.get_model("registry", "AuditEvent")
    for rollout in Rollout.objects.filter(phase__in=ACTIVE).select_related("model", "version"):
        version = rollout.version
        if version.status != "approved":
            continue
        reason = f"rollout {rollout.pk} is in flight"
        Rollout.objects.filter(pk=rollout.pk).update(version_status_before="approved")
        ModelVersion.objects.filter(pk=version.pk, status="approved").update(status="canary", status_reason=reason)
        AuditEvent.objects.create(actor="migration", action="version.status", model_name=rollout.model.name,
                                  version_number=version.number, from_state="approved", to_state="canary",
                                  reason=reason, detail={"rollout": rollout.pk})


def unmark_canaries(apps, schema_editor):
    # Earlier mlcp has no `canary`: its in-flight canaries are `approved`.
    apps.get_model("registry", "ModelVersion").objects.filter(status="canary").update(status="approved")


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0006_canary_status'),
        ('rollouts', '0004_lease_fencing_and_analysis_retention'),
    ]

    operations = [
        migrations.AddField(
            model_name='rollout',
            name='version_status_before',
            field=models.CharField(blank=True, help_text="the canary's status before this rollout made it `canary`: where it returns if the rollout ends without promoting it (unless rolled back for its own fault)", max_length=32),
        ),
        migrations.RunPython(mark_canaries_in_flight, unmark_canaries),
    ]
