# Governance: a model's rollout target, who last changed its gate policy and default golden set (two-person
# approval), and existing gate policies raised to the organisation's minimum gates.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

GATE_ORDER = ("validation", "quantization", "golden_set")  # workers.gates.policy.GATE_NAMES, frozen here


def raise_policies_to_the_floor(apps, schema_editor):
    """A policy written before the floor existed (`"gates": []`, or no golden set) gets the mandatory gates back.

    Only a policy that lists its gates can be below the floor; one without `gates` runs the default, all three.
    """
    RegisteredModel = apps.get_model("registry", "RegisteredModel")
    AuditEvent = apps.get_model("registry", "AuditEvent")
    mandatory = set(settings.MLCP_MINIMUM_GATES)
    for model in RegisteredModel.objects.all():
        policy = model.gate_policy if isinstance(model.gate_policy, dict) else {}
        gates = policy.get("gates")
        if not isinstance(gates, list) or mandatory <= set(gates):
            continue
        raised = [gate for gate in GATE_ORDER if gate in set(gates) | mandatory]
        model.gate_policy = {**policy, "gates": raised}
        model.save(update_fields=["gate_policy"])
        AuditEvent.objects.create(actor="system", action="model.gate_policy", model_name=model.name,
                                  reason="raised to the organisation's minimum gates (MLCP_MINIMUM_GATES)",
                                  detail={"from": policy, "to": model.gate_policy})


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('registry', '0002_gate_isolation'),
    ]

    operations = [
        migrations.AddField(
            model_name='registeredmodel',
            name='rollout_target',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name='registeredmodel',
            name='gate_policy_changed_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='registeredmodel',
            name='gate_policy_changed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='registeredmodel',
            name='golden_set_changed_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='registeredmodel',
            name='golden_set_changed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(raise_policies_to_the_floor, migrations.RunPython.noop),
    ]
