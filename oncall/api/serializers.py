"""How the receiver's answer and a runbook policy look in the API.

The notification itself is read by `oncall.alertmanager` (strictly, with its
own caps); the serializer below only documents it for the OpenAPI schema.
"""

from rest_framework import serializers

from oncall.choices import Outcome, RunbookAction
from oncall.models import DEFAULT_ROLLBACK_WINDOW_S
from oncall.policy import MAX_ROLLBACK_WINDOW_S, MAX_RULES

MAX_REASON = 2000


class AlertSerializer(serializers.Serializer):
    status = serializers.ChoiceField(["firing", "resolved"])
    labels = serializers.DictField(child=serializers.CharField(), help_text="alertname, model, and optionally "
                                   "version and namespace")
    annotations = serializers.DictField(child=serializers.CharField(), required=False)
    startsAt = serializers.DateTimeField()  # noqa: N815  (Alertmanager's field names)
    endsAt = serializers.DateTimeField(required=False)  # noqa: N815
    generatorURL = serializers.CharField(required=False)  # noqa: N815
    fingerprint = serializers.RegexField(r"^[0-9a-f]{1,64}$")


class AlertmanagerNotificationSerializer(serializers.Serializer):
    """Alertmanager's webhook payload, version 4 (documentation only)."""

    version = serializers.ChoiceField(["4"])
    groupKey = serializers.CharField()  # noqa: N815
    status = serializers.ChoiceField(["firing", "resolved"])
    receiver = serializers.CharField()
    alerts = AlertSerializer(many=True)


class HandledAlertSerializer(serializers.Serializer):
    alertname = serializers.CharField()
    fingerprint = serializers.CharField()
    status = serializers.CharField()
    model = serializers.CharField(help_text="empty when no registered model is named")
    outcome = serializers.ChoiceField(Outcome.choices)
    detail = serializers.CharField()
    rollout = serializers.IntegerField(allow_null=True)
    duplicate = serializers.BooleanField(help_text="handled by an earlier delivery; nothing was done again")


class ReceiverAnswerSerializer(serializers.Serializer):
    handled = HandledAlertSerializer(many=True)


class RunbookPolicySerializer(serializers.Serializer):
    model = serializers.CharField()
    configured = serializers.BooleanField(help_text="false: the default policy, every alert recorded only")
    actions = serializers.DictField(child=serializers.ChoiceField(RunbookAction.choices),
                                    help_text="alert name to action; '*' for any other alert")
    dry_run = serializers.BooleanField()
    rollback_window_s = serializers.IntegerField()


class RunbookPolicyChangeSerializer(serializers.Serializer):
    """`PUT models/{name}/runbook-policy`: the whole new policy and why (approver or admin)."""

    actions = serializers.DictField(child=serializers.ChoiceField(RunbookAction.choices), required=False,
                                    default=dict, help_text=f"at most {MAX_RULES} alert names (or '*') to an action")
    dry_run = serializers.BooleanField(required=False, default=False)
    rollback_window_s = serializers.IntegerField(required=False, default=DEFAULT_ROLLBACK_WINDOW_S, min_value=0,
                                                 max_value=MAX_ROLLBACK_WINDOW_S)
    reason = serializers.CharField(max_length=MAX_REASON, allow_blank=True, required=False, default="")
