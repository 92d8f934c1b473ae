"""How rollouts look in the API, and what starting or steering one accepts.

Every field is checked for type, range and size here, so a malformed body is
a 400 naming the field; the rules a plan's steps follow (whole percents that
increase, a 100% last step) are `rollouts.strategy`'s, and a plan that breaks
them or the bounds below is a 400 `invalid_strategy`.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from controlplane.api import ClientJSONField
from controlplane.errors import InvalidInput
from k8s import ROUTER_KINDS
from rollouts.analysis import ALL_CHECKS
from rollouts.choices import allowed_controls
from rollouts.liveness import controller_liveness
from rollouts.models import AnalysisRun, Rollout, RolloutEvent

MAX_STEPS = 100  # weights strictly increase from 1 to 100
MAX_PAUSE_S = 7 * 24 * 3600
MAX_HOLD_BUDGET_S = 30 * 24 * 3600
MAX_REPLICAS = 1000
MAX_REASON = 2000
# Kubernetes names: a DNS-1123 label (namespaces, Services) or subdomain (Deployments, HTTPRoutes).
K8S_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
K8S_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
K8S_NAME_HELP = "lowercase letters, digits and dashes, starting and ending with a letter or digit"


class RolloutEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = RolloutEvent
        fields = ["at", "old", "new", "step", "reason", "actor", "evidence"]


class AnalysisRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = AnalysisRun
        fields = ["at", "step", "verdict", "reason", "evidence"]


class ControllerLivenessSerializer(serializers.Serializer):
    """Whether any controller is acting (rollouts.liveness): an active rollout moves only while `alive`."""

    alive = serializers.BooleanField()
    holder = serializers.CharField(help_text="the lease holder; empty when none ever ticked")
    last_tick_at = serializers.DateTimeField(allow_null=True, help_text="its last tick started or finished")
    stale_for_s = serializers.FloatField(allow_null=True, help_text="seconds since then; null: never")


class RolloutSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    stable_version = serializers.IntegerField(source="stable_version.number", read_only=True, allow_null=True)
    created_by = serializers.StringRelatedField(allow_null=True)  # null: started by the controller or a command
    weight = serializers.SerializerMethodField()
    last_analysis = serializers.SerializerMethodField()
    controller = serializers.SerializerMethodField(help_text="whether any controller is acting on rollouts")
    controls = serializers.SerializerMethodField(help_text="the on-call controls this rollout accepts now")

    class Meta:
        model = Rollout
        fields = ["id", "model", "version", "stable_version", "kind", "phase", "controls", "current_step", "weight",
                  "strategy", "traffic", "analysis", "approval_required", "step_started_at", "deadline_at",
                  "retreat_phase", "abort_reason", "message", "last_analysis", "controller", "created_at",
                  "updated_at", "finished_at", "created_by"]
        read_only_fields = fields

    def get_controls(self, obj) -> list[str]:
        return sorted(allowed_controls(obj.phase, obj.kind))

    def get_weight(self, obj) -> int | None:
        steps = obj.strategy.get("steps") or []
        if not steps or obj.current_step >= len(steps):
            return None
        step = steps[obj.current_step]
        return step["weight"] if isinstance(step, dict) else step

    @extend_schema_field(ControllerLivenessSerializer)
    def get_controller(self, obj) -> dict:
        # Read once per response, not once per rollout of a list.
        if "controller" not in self.context:
            self.context["controller"] = ControllerLivenessSerializer(controller_liveness().as_dict()).data
        return self.context["controller"]

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


def _k8s_name(pattern: str, max_length: int, **kwargs) -> serializers.RegexField:
    return serializers.RegexField(pattern, max_length=max_length, help_text=K8S_NAME_HELP,
                                  error_messages={"invalid": f"must be a Kubernetes name: {K8S_NAME_HELP}"}, **kwargs)


class Exclusive:
    """A number strictly above `low` (and below `high`): DRF's min_value and max_value include the bound."""

    def __init__(self, low: float, high: float | None = None):
        self.low, self.high = low, high

    def __call__(self, value):
        if not value > self.low:
            raise serializers.ValidationError(f"must be greater than {self.low:g}")
        if self.high is not None and not value < self.high:
            raise serializers.ValidationError(f"must be less than {self.high:g}")


class AnalysisSettingsSerializer(serializers.Serializer):
    """Overrides of what a rollout's analysis judges against (rollouts.strategy.AnalysisSettings)."""

    slo_target = serializers.FloatField(required=False, validators=[Exclusive(0, 1)])
    latency_threshold_ms = serializers.FloatField(required=False, max_value=3_600_000, validators=[Exclusive(0)])
    min_requests = serializers.IntegerField(required=False, min_value=1, max_value=10**9)
    alpha = serializers.FloatField(required=False, validators=[Exclusive(0, 1)])
    max_latency_ratio = serializers.FloatField(required=False, max_value=1000, validators=[Exclusive(0)])
    min_latency_gap_ms = serializers.FloatField(required=False, min_value=0, max_value=3_600_000)
    min_window_s = serializers.FloatField(required=False, max_value=86_400, validators=[Exclusive(0)])
    hold_budget_s = serializers.IntegerField(required=False, min_value=0, max_value=MAX_HOLD_BUDGET_S)
    checks = serializers.ListField(child=serializers.ChoiceField(choices=ALL_CHECKS), required=False, max_length=10,
                                   help_text="the checks this rollout's analysis runs")
    split_tolerance = serializers.FloatField(required=False, min_value=0, max_value=0.5)
    evaluation_delay_s = serializers.FloatField(required=False, min_value=0, max_value=3600)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    f"unknown analysis settings {[str(k)[:40] for k in unknown[:5]]}; known: {sorted(self.fields)}")
        return super().to_internal_value(data)


TRAFFIC_FIELDS = ("router", "namespace", "deployment", "replicas", "route", "stable_service", "canary_service")


class TrafficFields(serializers.Serializer):
    """Where a model's Deployments are (`k8s.RouterTarget`): only the fields sent."""

    namespace = _k8s_name(K8S_LABEL, 63, required=False)
    deployment = _k8s_name(K8S_SUBDOMAIN, 253, required=False)
    replicas = serializers.IntegerField(min_value=1, max_value=MAX_REPLICAS, required=False)
    router = serializers.ChoiceField(choices=sorted(ROUTER_KINDS), required=False)
    route = _k8s_name(K8S_SUBDOMAIN, 253, required=False, allow_blank=True)
    stable_service = _k8s_name(K8S_LABEL, 63, required=False, allow_blank=True)
    canary_service = _k8s_name(K8S_LABEL, 63, required=False, allow_blank=True)

    def traffic_config(self) -> dict:
        data = self.validated_data
        return {k: data[k] for k in TRAFFIC_FIELDS if k in data}


class RolloutTargetSerializer(TrafficFields):
    """`PUT models/{name}/target` (admin): where the model's rollouts go, and why it changed."""

    namespace = _k8s_name(K8S_LABEL, 63)
    deployment = _k8s_name(K8S_SUBDOMAIN, 253)
    reason = serializers.CharField(max_length=MAX_REASON, allow_blank=True, required=False, default="")


class RolloutStartSerializer(TrafficFields):
    """`POST rollouts/`: the traffic fields are optional; any sent must repeat the model's rollout target."""

    model = serializers.CharField(max_length=63)
    version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    steps = ClientJSONField(required=False, help_text="[10, 25, 50, 100] or [{weight, pause_s, analysis}]")
    pause_s = serializers.IntegerField(min_value=0, max_value=MAX_PAUSE_S, required=False,
                                       help_text="pause of every step given as a weight")
    analysis = AnalysisSettingsSerializer(required=False)
    approval_required = serializers.BooleanField(default=True)

    def validate_steps(self, value):
        """Bounds that rollouts.strategy.parse_steps leaves open; its own rules (and code) come after."""
        if not isinstance(value, list):
            return value  # parse_steps refuses it as invalid_strategy
        if len(value) > MAX_STEPS:
            raise _invalid_strategy(f"at most {MAX_STEPS} steps, not {len(value)}")
        for step in value:
            if not isinstance(step, dict):
                continue
            pause_s, analysis = step.get("pause_s", 0), step.get("analysis", True)
            if _whole(pause_s) and pause_s > MAX_PAUSE_S:
                raise _invalid_strategy(f"a step's pause_s is at most {MAX_PAUSE_S} seconds")
            if not isinstance(analysis, bool):
                raise _invalid_strategy("a step's analysis is true or false")
        return value

    def step_list(self):
        steps, pause_s = self.validated_data.get("steps"), self.validated_data.get("pause_s")
        if pause_s is None or not isinstance(steps, list):
            return steps
        return [{"weight": s, "pause_s": pause_s} if isinstance(s, int) else s for s in steps]


class RolloutReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=MAX_REASON, allow_blank=True, required=False, default="")


class PromoteSerializer(serializers.Serializer):
    full = serializers.BooleanField(default=False)


def _invalid_strategy(detail: str) -> InvalidInput:
    # The code rollouts.strategy gives every other malformed plan, so clients see one code for all of them.
    return InvalidInput(detail, code="invalid_strategy")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
