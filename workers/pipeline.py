"""The gate pipeline: which gate runs next for a version, and what its verdict does.

`run_gate` is the one domain function a Celery task calls. It is idempotent:
a gate that already has a verdict is not run again, so a redelivered task
(a worker killed mid-gate) converges on one result per gate per version.
Every gate first verifies the artifact and loads exactly the verified bytes.
"""

import logging
import time
import traceback
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from controlplane.errors import MlcpError
from registry import services
from registry.choices import ArtifactFormat, VersionStatus
from registry.models import GateResult, GateVerdict, ModelVersion
from workers.gates.outcome import GateOutcome
from workers.gates.policy import resolve_gate_policy

log = logging.getLogger(__name__)
DECIDED = {GateVerdict.PASS, GateVerdict.FAIL}
INT8_DERIVATION = "int8-static-qdq"
CONVERTED_DERIVATION = "onnx-from-pt2"


def gates_for(version: ModelVersion, policy: dict) -> list[str]:
    """The policy's gates; a derived int8 version is not quantized again.

    A .pt2 program only goes through validation, which converts it to ONNX
    and registers the conversion as a derived version: that ONNX version,
    the artifact that ships, carries the remaining gates.
    """
    if version.format == ArtifactFormat.TORCH_EXPORT:
        return ["validation"] if "validation" in policy["gates"] else []
    gates = list(policy["gates"])
    if version.derivation == INT8_DERIVATION and "quantization" in gates:
        gates.remove("quantization")
    return gates


def start_pipeline(version: ModelVersion, *, actor="gate-pipeline") -> list[str]:
    """Move a registered version to `gating` and create one pending row per gate."""
    policy = resolve_gate_policy(version.model.gate_policy)
    gates = gates_for(version, policy)
    with transaction.atomic():
        if version.status != VersionStatus.GATING:
            services.transition_version(version, VersionStatus.GATING, actor=actor, reason=f"gates: {', '.join(gates)}")
        for position, gate in enumerate(gates):
            GateResult.objects.get_or_create(version=version, gate=gate, defaults={"position": position})
        # A re-run after an error runs the errored gate again; decided gates keep their verdicts.
        GateResult.objects.filter(version=version, verdict=GateVerdict.ERROR).update(verdict=GateVerdict.PENDING)
    return gates


def next_gate(version: ModelVersion) -> str | None:
    pending = version.gate_results.exclude(verdict__in=DECIDED).order_by("position").first()
    return pending.gate if pending else None


def run_gate(version_id: int, gate: str, *, attempt_is_last: bool = True) -> GateResult | None:
    """Run one gate on one version (or return its existing verdict) and store the outcome."""
    version = ModelVersion.objects.select_related("model", "blob").filter(pk=version_id).first()
    if version is None:
        log.warning("version %s is gone; gate %s not run", version_id, gate)
        return None
    result = GateResult.objects.get(version=version, gate=gate)
    if result.verdict in DECIDED:
        return result
    GateResult.objects.filter(pk=result.pk).update(verdict=GateVerdict.RUNNING, started_at=timezone.now(),
                                                   attempts=result.attempts + 1)
    policy = resolve_gate_policy(version.model.gate_policy)
    started = time.monotonic()
    try:
        model_bytes = services.read_verified_artifact(version)
        outcome = GATES[gate](version, model_bytes, policy)
    except MlcpError as exc:
        outcome = GateOutcome.error(gate, f"{gate} could not run: {exc.detail}", code=exc.code)
    except Exception as exc:  # a gate bug must show as an error, never as a pass
        if not attempt_is_last:
            raise
        outcome = GateOutcome.error(gate, f"{gate} crashed: {type(exc).__name__}: {exc}",
                                    traceback=traceback.format_exc(limit=5))
    outcome.timings.setdefault("total_s", round(time.monotonic() - started, 4))
    return record_outcome(version, gate, outcome)


def record_outcome(version: ModelVersion, gate: str, outcome: GateOutcome) -> GateResult:
    GateResult.objects.filter(version=version, gate=gate).update(
        verdict=outcome.verdict, summary=outcome.summary, metrics=outcome.metrics, evidence=outcome.evidence,
        device=outcome.device, timings=outcome.timings, finished_at=timezone.now(),
    )
    return GateResult.objects.get(version=version, gate=gate)


def conclude(version_id: int) -> str | None:
    """After a gate: reject on a fail, send back on an error, await approval when all passed.

    Returns the next gate to run, or None when the pipeline is over.
    """
    version = ModelVersion.objects.select_related("model").get(pk=version_id)
    if version.status != VersionStatus.GATING:
        return None
    results = list(version.gate_results.order_by("position"))
    failed = next((r for r in results if r.verdict == GateVerdict.FAIL), None)
    errored = next((r for r in results if r.verdict == GateVerdict.ERROR), None)
    if failed:
        services.transition_version(version, VersionStatus.REJECTED, actor="gate-pipeline",
                                    reason=f"{failed.gate} gate failed: {failed.summary}", gate=failed.gate)
        return None
    if errored:
        services.transition_version(version, VersionStatus.REGISTERED, actor="gate-pipeline",
                                    reason=f"{errored.gate} gate errored: {errored.summary}", gate=errored.gate)
        return None
    upcoming = next_gate(version)
    if upcoming is None:
        services.transition_version(version, VersionStatus.AWAITING_APPROVAL, actor="gate-pipeline",
                                    reason="all gates passed")
    return upcoming


# ------------------------------------------------------------------ gates

def _validation(version: ModelVersion, model_bytes: bytes, policy: dict) -> GateOutcome:
    from workers.gates.validation import run_validation

    declared = version.graph_info.get("declared_signature")
    if version.format != ArtifactFormat.TORCH_EXPORT:
        return run_validation(model_bytes, declared_signature=declared, policy=policy)
    converted, parity = _convert_pt2(version, model_bytes, policy)
    if converted is None:
        return GateOutcome(gate="validation", verdict="fail", summary=parity["summary"], evidence={"parity": parity})
    outcome = run_validation(services.read_verified_artifact(converted), declared_signature=declared, policy=policy)
    outcome.evidence.update(parity=parity, converted_version=converted.number, converted_digest=converted.digest)
    outcome.summary = f"Converted to ONNX as {converted} with matching outputs. {outcome.summary}"
    return outcome


def _convert_pt2(version: ModelVersion, pt2_bytes: bytes, policy: dict):
    """The registered ONNX conversion of a .pt2 version (made once), or (None, why) on a parity failure."""
    existing = ModelVersion.objects.filter(parent=version, derivation=CONVERTED_DERIVATION).first()
    if existing is not None:
        return existing, existing.graph_info.get("parity", {})
    from workers.gates.conversion import convert_pt2_to_onnx

    try:
        onnx_bytes, parity = convert_pt2_to_onnx(pt2_bytes, parity_atol=policy["conversion"]["parity_atol"])
    except MlcpError as exc:
        if exc.code != "conversion_parity_failed":
            raise
        return None, {"summary": exc.detail, **exc.context}
    converted = services.ingest_bytes(
        version.model, onnx_bytes, version.artifact_name.rsplit(".", 1)[0] + ".onnx",
        services.VersionMetadata(parent_number=version.number, derivation=CONVERTED_DERIVATION,
                                 git_commit=version.git_commit, training_data_digest=version.training_data_digest,
                                 tags=version.tags),
        actor="gate-pipeline",
    )
    ModelVersion.objects.filter(pk=converted.pk).update(graph_info={**converted.graph_info, "parity": parity})
    return converted, parity


def _golden_set_of(version: ModelVersion):
    from workers.gates.loading import parse_golden_set

    golden = version.model.default_golden_set
    if golden is None:
        raise MlcpError(f"model '{version.model.name}' has no golden set; push one with "
                        "`mlcp golden-set push`", code="no_golden_set")
    from registry import signing
    from registry.storage import default_store

    signing.verify_bundle(golden.signature_bundle, golden.digest)
    return golden, parse_golden_set(default_store().read_verified(golden.digest))


def _quantization(version: ModelVersion, model_bytes: bytes, policy: dict) -> GateOutcome:
    from workers.gates.quantization import quantize_int8

    golden_row, golden = _golden_set_of(version)
    result = quantize_int8(model_bytes, golden, policy)
    outcome = result.outcome
    outcome.evidence["golden_set"] = golden_row.number
    if result.int8_bytes is None:
        return outcome
    derived = ModelVersion.objects.filter(parent=version, derivation=INT8_DERIVATION).first()
    if derived is None:
        derived = services.ingest_bytes(
            version.model, result.int8_bytes, version.artifact_name.rsplit(".", 1)[0] + ".int8.onnx",
            services.VersionMetadata(parent_number=version.number, derivation=INT8_DERIVATION,
                                     git_commit=version.git_commit, training_data_digest=version.training_data_digest,
                                     tags={**version.tags, "precision": "int8"}),
            actor="gate-pipeline",
        )
    outcome.evidence["derived_version"] = derived.number
    outcome.evidence["derived_digest"] = derived.digest
    return outcome


def _golden(version: ModelVersion, model_bytes: bytes, policy: dict) -> GateOutcome:
    from workers.gates.golden import evaluate_golden_set

    golden_row, golden = _golden_set_of(version)
    production = services.alias_target(version.model, "production")
    production_bytes = None
    if production is not None and production.pk != version.pk:
        production_bytes = services.read_verified_artifact(production)
    outcome = evaluate_golden_set(model_bytes, golden, production_bytes=production_bytes, policy=policy)
    outcome.evidence["golden_set"] = golden_row.number
    outcome.evidence["production_version"] = production.number if production_bytes else None
    return outcome


GATES: dict[str, Callable[[ModelVersion, bytes, dict], GateOutcome]] = {
    "validation": _validation,
    "quantization": _quantization,
    "golden_set": _golden,
}
