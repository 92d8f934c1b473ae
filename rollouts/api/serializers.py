"""How rollouts look in the API, and what starting one takes."""

from rest_framework import serializers

from rollouts.choices import RouterKind
from rollouts.models import AnalysisRun, Rollout, RolloutEvent


class RolloutEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RolloutEvent
        fields = ["at", "old", "new", "step", "reason", "actor", "evidence"]


class AnalysisRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = AnalysisRun
        fields = ["at", "step", "verdict", "reason", "evidence"]


class RolloutSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    stable_version = serializers.IntegerField(source="stable_version.number", read_only=True, allow_null=True)
    created_by = serializers.StringRelatedField()
    weight = serializers.SerializerMethodField()
    last_analysis = serializers.SerializerMethodField()

    class Meta:
        model = Rollout
        fields = ["id", "model", "version", "stable_version", "kind", "phase", "current_step", "weight",
                  "strategy", "traffic", "analysis", "approval_required", "step_started_at", "deadline_at",
                  "retreat_phase", "abort_reason", "message", "last_analysis", "created_at", "updated_at",
                  "finished_at", "created_by"]
        read_only_fields = fields

    def get_weight(self, obj) -> int | None:
        steps = obj.strategy.get("steps") or []
        if not steps or obj.current_step >= len(steps):
            return None
        step = steps[obj.current_step]
        return step["weight"] if isinstance(step, dict) else step

    def get_last_analysis(self, obj) -> dict | None:
        run = obj.analysis_runs.order_by("-at", "-id").first()
        if run is None:
            return None
        checks = [{k: c.get(k) for k in ("check", "verdict", "reason")} for c in run.evidence.get("checks", [])]
        return {"at": run.at, "step": run.step, "verdict": run.verdict, "reason": run.reason, "checks": checks}


class RolloutDetailSerializer(RolloutSerializer):
    events = RolloutEventSerializer(many=True, read_only=True)

    class Meta(RolloutSerializer.Meta):
        fields = RolloutSerializer.Meta.fields + ["events"]
        read_only_fields = fields


class RolloutStartSerializer(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.IntegerField(min_value=1)
    namespace = serializers.CharField()
    deployment = serializers.CharField()
    replicas = serializers.IntegerField(min_value=1, default=4)
    router = serializers.ChoiceField(choices=RouterKind.choices, default=RouterKind.REPLICA_RATIO)
    route = serializers.CharField(required=False, allow_blank=True)
    stable_service = serializers.CharField(required=False, allow_blank=True)
    canary_service = serializers.CharField(required=False, allow_blank=True)
    steps = serializers.JSONField(required=False, help_text="[10, 25, 50, 100] or [{weight, pause_s, analysis}]")
    pause_s = serializers.IntegerField(min_value=0, required=False, help_text="pause of every step given as a weight")
    analysis = serializers.DictField(required=False)
    approval_required = serializers.BooleanField(default=True)

    def traffic_config(self) -> dict:
        data = self.validated_data
        return {k: data.get(k) for k in ("router", "namespace", "deployment", "replicas", "route", "stable_service",
                                         "canary_service")}

    def step_list(self):
        steps, pause_s = self.validated_data.get("steps"), self.validated_data.get("pause_s")
        if pause_s is None or not isinstance(steps, list):
            return steps
        return [{"weight": s, "pause_s": pause_s} if isinstance(s, int) else s for s in steps]


class RolloutReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(allow_blank=True, required=False, default="")


class PromoteSerializer(serializers.Serializer):
    full = serializers.BooleanField(default=False)
